// @sitnikov/connection-broker src/client/Channel.ts, types removed (see NOTICE).
// Copyright (c) 2025 Yuri Sitnikov. MIT License (see LICENSE).
'use strict'

/**
 * Represents a channel (pseudo-connection) between two connections.
 *
 * Channels are ephemeral: open → use → close
 * Either party can send messages or close the channel.
 */
class Channel {
    constructor(
        client,
        channelId,
        peerId,
    ) {
        this.client = client;
        this.channelId = channelId;
        this.peerId = peerId;
    }

    /**
     * Send a message to the other party on this channel.
     * The payload is completely opaque - the broker just routes it.
     * Returns a promise that resolves when the broker confirms delivery.
     */
    async send(payload) {
        await this.client.sendWithResponse("message", {
            channelId: this.channelId,
            payload,
        });
    }

    async sendWithResponse(payload, timeout) {
        return await new Promise((resolve, reject) => {
            const timeoutHandle = setTimeout(() => {
                reject(new Error(`Operation timed out after ${timeout / 1000} seconds`));
            }, timeout);

            this.onMessage = (payload) => {
                clearTimeout(timeoutHandle);
                resolve(payload);
            };

            this.onClosed = () => {
                clearTimeout(timeoutHandle);
                reject(new Error("Channel closed before receiving response"));
            };

            this.send(payload);
        });
    }

    /**
     * Close this channel.
     * Notifies the other party that the channel is closed.
     */
    close() {
        this.client.send("close", { channelId: this.channelId });
    }

    /**
     * Get the ID of the peer on the other end of this channel.
     */
    getPeerId() {
        return this.peerId;
    }

    /**
     * Get the channel ID.
     */
    getChannelId() {
        return this.channelId;
    }

    /** @internal */
    handleMessage(payload) {
        this.onMessage?.(payload);
    }

    /** @internal */
    handleClosed() {
        this.onClosed?.();
    }
}

module.exports = { Channel };
