// Stand-in for the `ws` npm package (client side only): RFC 6455 over `net`, just what
// amqp-swarm's resilient socket uses — new WebSocket(url), on('open'|'message'|'error'|'close'),
// send(Buffer|string), close(), readyState/OPEN, binaryType (ignored: messages are Buffers).
//
// Faithful to ws where amqp-swarm depends on it: 'open' is emitted synchronously and any
// frames that arrived in the same read as the 101 are emitted right after it, in the same
// tick — so a listener attached after `await open` misses them, as with the real ws.
const net = require('net')
const crypto = require('crypto')
const { EventEmitter } = require('events')

const CONNECTING = 0
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

class WebSocket extends EventEmitter {
  constructor (url) {
    super()
    const u = new URL(url)
    this.url = url
    this.readyState = CONNECTING
    this.binaryType = 'nodebuffer'
    this._buffer = Buffer.alloc(0)
    this._fragments = null
    this._fragmentOpcode = 0
    const key = crypto.randomBytes(16).toString('base64')
    this._accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
    this._socket = net.connect(Number(u.port || 80), u.hostname)
    this._socket.setNoDelay(true)
    this._socket.on('connect', () => {
      this._socket.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    })
    this._socket.on('data', (chunk) => this._onData(chunk))
    this._socket.on('error', (err) => {
      if (this.readyState === CONNECTING) this.emit('error', err)
    })
    this._socket.on('close', () => this._finish())
    WebSocket.opened++
  }

  _onData (chunk) {
    this._buffer = Buffer.concat([this._buffer, chunk])
    if (this.readyState === CONNECTING) {
      const end = this._buffer.indexOf('\r\n\r\n')
      if (end < 0) return
      const head = this._buffer.slice(0, end).toString('latin1')
      this._buffer = this._buffer.slice(end + 4)
      const accept = /\r\nsec-websocket-accept:\s*(\S+)/i.exec(head)
      if (!/^HTTP\/1\.1 101/.test(head) || !accept || accept[1] !== this._accept) {
        this.emit('error', new Error('unexpected server response: ' + head.split('\r\n')[0]))
        this._socket.destroy()
        return
      }
      this.readyState = OPEN
      this.emit('open')
    }
    this._parseFrames()
  }

  _parseFrames () {
    while (this._buffer.length >= 2) {
      const b0 = this._buffer[0]
      const b1 = this._buffer[1]
      if (b1 & 0x80) return this._fail('masked frame from server')
      let length = b1 & 0x7f
      let offset = 2
      if (length === 126) {
        if (this._buffer.length < 4) return
        length = this._buffer.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (this._buffer.length < 10) return
        length = Number(this._buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (this._buffer.length < offset + length) return
      const payload = this._buffer.slice(offset, offset + length)
      this._buffer = this._buffer.slice(offset + length)
      const fin = (b0 & 0x80) !== 0
      const opcode = b0 & 0x0f
      if (opcode === 0x8) {
        if (this.readyState === OPEN) this._sendFrame(0x8, payload.slice(0, 2))
        this.readyState = CLOSING
        this._socket.end()
        return
      }
      if (opcode === 0x9) { this._sendFrame(0xA, payload); continue }
      if (opcode === 0xA) continue
      if (opcode === 0x1 || opcode === 0x2) {
        this._fragmentOpcode = opcode
        this._fragments = [payload]
      } else if (opcode === 0x0 && this._fragments) {
        this._fragments.push(payload)
      } else {
        return this._fail('unexpected opcode ' + opcode)
      }
      if (fin) {
        const data = Buffer.concat(this._fragments)
        this._fragments = null
        if (this.readyState === OPEN) this.emit('message', data)
      }
    }
  }

  _sendFrame (opcode, payload) {
    const mask = crypto.randomBytes(4)
    let header
    if (payload.length < 126) {
      header = Buffer.from([0x80 | opcode, 0x80 | payload.length])
    } else if (payload.length < 65536) {
      header = Buffer.alloc(4)
      header[0] = 0x80 | opcode
      header[1] = 0x80 | 126
      header.writeUInt16BE(payload.length, 2)
    } else {
      header = Buffer.alloc(10)
      header[0] = 0x80 | opcode
      header[1] = 0x80 | 127
      header.writeBigUInt64BE(BigInt(payload.length), 2)
    }
    const masked = Buffer.alloc(payload.length)
    for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ mask[i & 3]
    this._socket.write(Buffer.concat([header, mask, masked]))
  }

  send (data) {
    if (this.readyState !== OPEN) throw new Error('WebSocket is not open: readyState ' + this.readyState)
    if (typeof data === 'string') this._sendFrame(0x1, Buffer.from(data, 'utf-8'))
    else this._sendFrame(0x2, Buffer.from(data))
  }

  close () {
    if (this.readyState === OPEN) {
      this._sendFrame(0x8, Buffer.from([0x03, 0xe8]))
      this.readyState = CLOSING
      setTimeout(() => this._socket.destroy(), 1000).unref()
    } else if (this.readyState === CONNECTING) {
      this._socket.destroy()
    }
  }

  _fail (why) {
    this.emit('error', new Error(why))
    this._socket.destroy()
  }

  _finish () {
    if (this.readyState === CLOSED) return
    const wasOpen = this.readyState !== CONNECTING
    this.readyState = CLOSED
    if (wasOpen) this.emit('close')
  }
}

WebSocket.opened = 0
for (const [name, value] of Object.entries({ CONNECTING, OPEN, CLOSING, CLOSED })) {
  WebSocket[name] = value
  WebSocket.prototype[name] = value
}

module.exports = WebSocket
