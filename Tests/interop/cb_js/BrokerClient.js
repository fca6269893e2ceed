// @sitnikov/connection-broker src/client/BrokerClient.ts, types removed (see NOTICE).
// Copyright (c) 2025 Yuri Sitnikov. MIT License (see LICENSE).
'use strict'
const { Channel } = require("./Channel");

// packages/protocol/src/index.ts (the only runtime code of @sitnikov/protocol), types removed.
function processRequestByProtocolImplementationMap(request, implementationMap) {
    const implementation = implementationMap[request.type];
    if (!implementation) {
        throw new ProtocolUnknownRequest(`Unknown request type: ${request.type}`);
    }
    return implementation(request);
}

class ProtocolUnknownRequest extends Error {}

/**
 * Client SDK for connecting to the generic connection broker.
 *
 * Usage:
 * ```typescript
 * const client = new BrokerClient('ws://localhost:3004', 'my-role')
 * await client.connect()
 *
 * // Discover connections
 * const ids = await client.listByRole('other-role')
 *
 * // Open channel
 * const channel = await client.openChannel(targetId)
 *
 * // Send messages
 * channel.send({ foo: 'bar' })
 *
 * // Listen for messages
 * channel.onMessage = (payload) => { ... }
 *
 * // Close
 * channel.close()
 * ```
 */
class BrokerClient {
    ws;
    myId;
    channels = new Map();

    // Track pending requests by message ID
    pendingRequests = new Map();

    reconnectTimer;
    reconnectAttempts = 0;
    maxReconnectDelay = 30000;
    shouldMaintainConnection = false;
    nextMessageId = 1;

    /**
     * Callback for incoming channels.
     * Set this to handle channels opened by other connections.
     */
    onIncomingChannel;

    /**
     * Callback for when connection is established.
     */
    onConnected;

    /**
     * Callback for when connection is lost.
     */
    onDisconnected;

    constructor(
        brokerUrl,
        role,
        logger,
    ) {
        this.brokerUrl = brokerUrl;
        this.role = role;
        this.logger = logger;
    }

    /**
     * Send a typed message to the broker.
     * Generates and assigns a unique message ID, then sends the message.
     * Returns the assigned message ID.
     * Throws if WebSocket is not connected or not in OPEN state.
     */
    send(
        type,
        msg,
    ) {
        if (!this.ws) {
            throw new Error("Not connected to broker");
        }

        // Check readyState - handle both browser and Node.js WebSocket
        const readyState = this.ws.readyState;
        const OPEN = typeof WebSocket !== "undefined" ? WebSocket.OPEN : 1;

        if (readyState !== OPEN) {
            throw new Error(`WebSocket is not open (readyState: ${readyState})`);
        }

        // Generate ID and create full message
        const id = this.nextMessageId++;

        this.ws.send(JSON.stringify({ ...msg, type, id }));
        return id;
    }

    /**
     * Send a message and wait for a response with timeout.
     * Returns the response message or throws an error.
     * Handling the response is the responsibility of the caller.
     * @internal
     */
    async sendWithResponse(
        type,
        msg,
        timeout = 3000,
    ) {
        const messageId = this.send(type, msg);

        const result = await new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.pendingRequests.delete(messageId);
                reject(new Error(`Operation timed out after ${timeout / 1000} seconds`));
            }, timeout);

            this.pendingRequests.set(messageId, { resolve, reject, timer });
        });

        if (result && "type" in result && result.type === "error") {
            throw new Error(result.error);
        }

        // eslint-disable-next-line @typescript-eslint/consistent-type-assertions
        return result;
    }

    /**
     * Connect to the broker and register with the role specified in the constructor.
     * This is a one-time connection - use maintainConnection() for auto-reconnect.
     */
    async connect() {
        return this.doConnect();
    }

    /**
     * Maintain a persistent connection with automatic reconnection on disconnect.
     * Uses exponential backoff: 1s, 2s, 4s, 8s, 16s, up to 30s max.
     */
    maintainConnection() {
        this.shouldMaintainConnection = true;
        this.doConnect().catch();
    }

    async doConnect() {
        // Create WebSocket using the appropriate implementation
        if (typeof window !== "undefined") {
            // Browser environment - use native WebSocket
            this.ws = new WebSocket(this.brokerUrl);
        } else {
            // Node.js environment - use 'ws' package
            const { WebSocket: WsWebSocket } = require("ws");
            this.ws = new WsWebSocket(this.brokerUrl);
        }

        const ws = this.ws;

        return new Promise((resolve, reject) => {
            const connectionTimeout = setTimeout(() => {
                reject(new Error("Connection timeout"));
            }, 10000);

            ws.onopen = async () => {
                try {
                    const { connectionId } = await this.sendWithResponse("register", { role: this.role });

                    this.reconnectAttempts = 0;
                    this.myId = connectionId;
                    this.logger?.log(`Registered with broker, ID: ${connectionId}`);
                    this.onConnected?.();
                    resolve();
                } catch (error) {
                    reject(error);
                } finally {
                    clearTimeout(connectionTimeout);
                }
            };

            ws.onmessage = (event) => {
                try {
                    // Handle both browser and Node.js message events
                    const data = "data" in event ? event.data : event;
                    const msgStr = typeof data === "string" ? data : data.toString();
                    const msg = JSON.parse(msgStr);

                    this.handleMessage(msg);
                } catch (error) {
                    this.logger?.error("Failed to parse broker message", error);
                }
            };

            ws.onerror = (event) => {
                clearTimeout(connectionTimeout);
                this.logger?.error(
                    `Failed to connect to the WebSocket: ${"message" in event ? event.message : "unknown error"}`,
                );
                reject(new Error("Failed to connect to the WebSocket"));
            };

            ws.onclose = () => {
                clearTimeout(connectionTimeout);
                this.handleDisconnect();
            };
        });
    }

    scheduleReconnect() {
        if (this.reconnectTimer) {
            clearTimeout(this.reconnectTimer);
        }

        const delay = Math.min(1000 * Math.pow(2, this.reconnectAttempts), this.maxReconnectDelay);

        this.logger?.log(`Reconnecting in ${delay}ms (attempt ${this.reconnectAttempts + 1})`);
        this.reconnectAttempts++;

        this.reconnectTimer = setTimeout(() => {
            this.doConnect().catch(() => this.scheduleReconnect());
        }, delay);
    }

    /**
     * List all connections with the specified role.
     * Returns an array of connection IDs.
     */
    async listByRole(role) {
        const { ids } = await this.sendWithResponse("list_by_role", { role });
        return ids;
    }

    /**
     * Open a channel to the specified connection ID.
     * Returns a Channel object that can be used to send/receive messages.
     */
    async openChannel(targetId) {
        const { channelId } = await this.sendWithResponse("open", { targetId });

        const channel = new Channel(this, channelId, targetId);
        this.channels.set(channelId, channel);
        this.logger?.log(`Channel ${channelId} opened to ${targetId}`);
        return channel;
    }

    /**
     * Get the ID assigned to this connection by the broker.
     */
    getMyId() {
        return this.myId;
    }

    /**
     * Disconnect from the broker and stop auto-reconnect.
     * Closes all active channels.
     */
    disconnect() {
        this.shouldMaintainConnection = false;
        if (this.reconnectTimer) {
            clearTimeout(this.reconnectTimer);
            this.reconnectTimer = undefined;
        }

        if (this.ws) {
            this.ws.close();
            this.ws = undefined;
        }

        // Close all channels
        for (const channel of this.channels.values()) {
            channel.handleClosed();
        }
        this.channels.clear();
    }

    handleMessage(msg) {
        // If message has replyTo, route to pending request
        if ("replyTo" in msg) {
            this.handleReply(msg);
            return;
        }

        // Otherwise handle as unsolicited message
        processRequestByProtocolImplementationMap(msg, {
            incoming_channel: ({ channelId, from }) => {
                const channel = new Channel(this, channelId, from);
                this.channels.set(channelId, channel);

                this.logger?.log(`Incoming channel ${channelId} from ${from}`);

                // Notify listener
                this.onIncomingChannel?.(channel);
            },
            channel_message: ({ channelId, payload }) => {
                const channel = this.channels.get(channelId);
                if (channel) {
                    channel.handleMessage(payload);
                }
            },
            channel_closed_notification: ({ channelId }) => {
                const channel = this.channels.get(channelId);
                if (channel) {
                    this.logger?.log(`Channel ${channelId} closed by other party`);
                    channel.handleClosed();
                    this.channels.delete(channelId);
                }
            },
        });
    }

    handleReply(msg) {
        const pending = this.pendingRequests.get(msg.replyTo);
        if (!pending) {
            this.logger?.error(`Received reply for unknown request: ${msg.replyTo}`);
            return;
        }

        clearTimeout(pending.timer);
        this.pendingRequests.delete(msg.replyTo);

        // Resolve with the raw message - caller handles response processing
        pending.resolve(msg);
    }

    handleDisconnect() {
        this.logger?.log("Disconnected from broker");
        this.onDisconnected?.();

        // Reject all pending operations
        for (const pending of this.pendingRequests.values()) {
            clearTimeout(pending.timer);
            pending.reject(new Error("Disconnected from broker"));
        }
        this.pendingRequests.clear();

        // Close all channels
        for (const channel of this.channels.values()) {
            channel.handleClosed();
        }
        this.channels.clear();

        // Auto-reconnect if enabled
        if (this.shouldMaintainConnection) {
            this.scheduleReconnect();
        }
    }
}

module.exports = { BrokerClient };
