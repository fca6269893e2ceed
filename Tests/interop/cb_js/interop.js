// Switchboard's driver for @sitnikov/connection-broker's own client SDK (BrokerClient.js and
// Channel.js, stripped of types: see NOTICE) against a Switchboard broker in its default
// (reference) profile. Usage: NODE_PATH=Tests/interop/rpc_js/stubs node interop.js ws://HOST:PORT/
// Prints one line per check and "N passed, M failed"; exits 1 on any failure.
'use strict'
const { BrokerClient } = require('./BrokerClient')
const { Channel } = require('./Channel')

const url = process.argv[2]
let passed = 0
let failed = 0
const run = Math.random().toString(16).slice(2, 10)

function check (name, ok, detail) {
  if (ok) { passed++; console.log('ok   ' + name) } else { failed++; console.log('FAIL ' + name + (detail === undefined ? '' : ': ' + JSON.stringify(detail))) }
}

/** The next call of the callback `install` sets up, or a timeout failure. */
function next (install, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out')), ms)
    install((value) => { clearTimeout(timer); resolve(value) })
  })
}

async function rejection (promise) {
  try { await promise; return null } catch (e) { return e.message }
}

async function main () {
  const a = new BrokerClient(url, 'js-a-' + run)
  const b = new BrokerClient(url, 'js-b-' + run)
  const c = new BrokerClient(url, 'js-c-' + run)
  await a.connect(); await b.connect(); await c.connect()
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
  check('register: connect() gives a UUID', uuid.test(a.getMyId()) && uuid.test(b.getMyId()), [a.getMyId(), b.getMyId()])

  const listed = await a.listByRole('js-b-' + run)
  check('list_by_role finds b', JSON.stringify(listed) === JSON.stringify([b.getMyId()]), listed)
  check('list_by_role of an unknown role is empty', (await a.listByRole('nobody-' + run)).length === 0)

  // open: b sees the incoming channel, a gets the Channel.
  const incoming = next((done) => { b.onIncomingChannel = done })
  const ab = await a.openChannel(b.getMyId())
  const ba = await incoming
  check('open: both ends share the channel id', ab.getChannelId() === ba.getChannelId() && uuid.test(ab.getChannelId()))
  check('open: peers are each other', ab.getPeerId() === b.getMyId() && ba.getPeerId() === a.getMyId())

  // Messages both ways, every JSON kind.
  for (const payload of [{ x: 1, nested: [true, null, 'é'] }, 'text', 42, null, [1, [2]]]) {
    const got = next((done) => { ba.onMessage = done })
    await ab.send(payload)
    check('message a->b ' + JSON.stringify(payload), JSON.stringify(await got) === JSON.stringify(payload))
  }
  const back = next((done) => { ab.onMessage = done })
  await ba.send({ reply: 'from b' })
  check('message b->a', JSON.stringify(await back) === '{"reply":"from b"}')
  // sendWithResponse: b answers every message.
  ba.onMessage = (p) => { ba.send({ echo: p }) }
  const answer = await ab.sendWithResponse({ q: 7 }, 3000)
  check('sendWithResponse round trip', JSON.stringify(answer) === '{"echo":{"q":7}}', answer)

  // Failure paths: each must reject in the SDK (it treats only type "error" as a failure).
  check('open to an unknown id fails', await rejection(a.openChannel('00000000-0000-4000-8000-000000000000')) === 'Target connection not found')
  check('open to a malformed id fails', await rejection(a.openChannel('not-a-uuid')) === 'Target connection not found')
  const ghost = new Channel(a, '00000000-0000-4000-8000-000000000000', 'nobody')
  check('message on an unknown channel fails', await rejection(ghost.send(1)) === 'Channel not found')
  const intruder = new Channel(c, ab.getChannelId(), a.getMyId())
  check('message by a non-party fails', await rejection(intruder.send(1)) === 'Not authorized for this channel')

  // close: b is told, then a message on the closed channel fails.
  const closed = next((done) => { ba.onClosed = done })
  ab.close()
  await closed
  check('close notifies the peer', true)
  check('message on a closed channel fails', await rejection(ab.send(1)) === 'Channel not found')

  // A channel to oneself.
  const selfIncoming = next((done) => { a.onIncomingChannel = done })
  const aa = await a.openChannel(a.getMyId())
  const aaIn = await selfIncoming
  // The SDK keys channels by id: the opener's Channel replaces the incoming one, so the
  // message comes back to `aa` (as it does against the reference broker).
  const selfGot = next((done) => { aa.onMessage = done })
  await aa.send('me')
  check('channel to oneself carries messages', await selfGot === 'me' && aaIn.getChannelId() === aa.getChannelId())

  // Disconnect: the peer's channel closes.
  const cIncoming = next((done) => { c.onIncomingChannel = done })
  const bc = await b.openChannel(c.getMyId())
  await cIncoming
  const gone = next((done) => { bc.onClosed = done })
  const disconnected = next((done) => { c.onDisconnected = done })
  c.disconnect()
  await gone
  check('disconnect closes the peer\'s channel', true)
  await disconnected
  check('the disconnected client is told', true)
  check('list_by_role no longer lists it', (await a.listByRole('js-c-' + run)).length === 0)
  check('open to the disconnected id fails', await rejection(b.openChannel(c.getMyId())) === 'Target connection not found')

  a.disconnect(); b.disconnect()
}

const guard = setTimeout(() => { check('finished within 30 s', false); report() }, 30000)
function report () {
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
}
main().then(() => { clearTimeout(guard); report() }, (e) => { clearTimeout(guard); check('no exception', false, String(e && e.stack)); report() })
