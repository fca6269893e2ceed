// Stand-in for the `uuid` npm package (only v4 is used by amqp-swarm's reply-handler).
const crypto = require('crypto')
module.exports = { v4: () => crypto.randomUUID() }
