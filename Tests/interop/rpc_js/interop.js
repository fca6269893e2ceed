// Interop: amqp-swarm 0.3.2's own client (vendored, unchanged) against switchboard-rpc-example.
//
// usage: NODE_PATH=Tests/interop/rpc_js/stubs node Tests/interop/rpc_js/interop.js ws://127.0.0.1:PORT/
// Prints one line per check and a closing "N passed, N failed" line; exits 1 on any failure.
const assert = require('assert')
const unwrap = require('async-unwrap')
const WebSocket = require('ws')
const createClient = require('./amqp-swarm/lib/client')

const url = process.argv[2]
let passed = 0
let failed = 0
const check = (name, fn) => {
  try {
    fn()
    passed++
    console.log('ok   ' + name)
  } catch (err) {
    failed++
    console.log('FAIL ' + name + '  ' + (err && err.message))
  }
}
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const errorShape = (err) => err && ({ name: err.constructor.name, type: err.type, subtype: err.subtype, message: err.message, data: err.data })

async function main () {
  const client = createClient(url)
  client.on('whoami', () => 'js-client')
  client.on('add', (ctx, a, b) => a + b)
  client.on('boom', (ctx) => ctx.throw('boom', { y: [2] }))
  client.on('crash', () => { throw new TypeError('clone') })
  client.on('undefined-result', () => undefined)

  // The first request goes out once init arrived (the client queues it until then).
  const echoed = await client.send('echo', 1, 'two', { three: [3] }, null, true, 1.5)
  check('echo returns its arguments', () => assert.deepStrictEqual(echoed, [1, 'two', { three: [3] }, null, true, 1.5]))
  check('init arrived on the first connection (no reconnect)', () => assert.strictEqual(WebSocket.opened, 1))

  const [failErr] = await client.send('fail')[unwrap]
  check('fail: endpoint error with data', () => assert.deepStrictEqual(errorShape(failErr),
    { name: 'AmqpSwarmReceivedError', type: 'endpoint', subtype: null, message: 'fail', data: { x: 1 } }))

  const [unhandledErr] = await client.send('no-such-name', 1)[unwrap]
  check('unhandled name: protocol/unhandled with requestName', () => assert.deepStrictEqual(errorShape(unhandledErr),
    { name: 'AmqpSwarmReceivedError', type: 'protocol', subtype: 'unhandled', message: "No handler found for request 'no-such-name'", data: { requestName: 'no-such-name' } }))

  // The node asked whoami right after init; wait for its answer to be recorded.
  let who = null
  for (let i = 0; i < 100 && who === null; i++) {
    who = await client.send('whoami-result')
    if (who === null) await sleep(10)
  }
  check("node's whoami reached the client and came back", () => assert.deepStrictEqual(who, { result: 'js-client' }))

  const sum = await client.send('ask', 'add', 2, 3)
  check('ask add(2, 3) through the node = 5', () => assert.strictEqual(sum, 5))
  const [boomErr] = await client.send('ask', 'boom')[unwrap]
  check("ask: the client's ctx.throw comes back unchanged", () => assert.deepStrictEqual(errorShape(boomErr),
    { name: 'AmqpSwarmReceivedError', type: 'endpoint', subtype: null, message: 'boom', data: { y: [2] } }))
  const [crashErr] = await client.send('ask', 'crash')[unwrap]
  check("ask: the client's plain Error comes back as endpoint/null data", () => assert.deepStrictEqual(errorShape(crashErr),
    { name: 'AmqpSwarmReceivedError', type: 'endpoint', subtype: null, message: 'clone', data: null }))
  const [askUnhandled] = await client.send('ask', 'nothing-here')[unwrap]
  check("ask: the client's unhandled error comes back unchanged", () => assert.deepStrictEqual(errorShape(askUnhandled),
    { name: 'AmqpSwarmReceivedError', type: 'protocol', subtype: 'unhandled', message: "No handler found for request 'nothing-here'", data: { requestName: 'nothing-here' } }))
  const undef = await client.send('ask', 'undefined-result')
  check('ask: a client handler returning undefined gives null', () => assert.strictEqual(undef, null))

  // slow never answers: the client's own 1 s timeout fires, while other requests keep working.
  const slow = client.send('slow')[unwrap]
  const during = await client.send('echo', 'during slow')
  check('requests are answered while slow() is pending', () => assert.deepStrictEqual(during, ['during slow']))
  const [slowErr] = await slow
  check('slow: protocol/timeout after 1 s', () => assert.deepStrictEqual(errorShape(slowErr),
    { name: 'AmqpSwarmReceivedError', type: 'protocol', subtype: 'timeout', message: 'Request timed out', data: null }))

  // 1,000 concurrent requests (each under the client's 1 s timeout).
  const many = await Promise.all(Array.from({ length: 1000 }, (_, i) => client.send('echo', i)[unwrap]))
  const bad = many.filter(([err, r], i) => err || r.length !== 1 || r[0] !== i)
  check('1,000 concurrent requests all answered correctly', () => assert.strictEqual(bad.length, 0, `${bad.length} failed: ${JSON.stringify(errorShape(bad[0] && bad[0][0]))}`))

  // Pings both ways for several seconds: the client pings every second with a 1 s timeout and
  // reconnects on a late pong; the server pings too (and gets two pongs for each).
  const openedBefore = WebSocket.opened
  const until = Date.now() + 3500
  let rounds = 0
  while (Date.now() < until) {
    const r = await client.send('echo', rounds)
    assert.deepStrictEqual(r, [rounds])
    rounds++
    await sleep(100)
  }
  check(`3.5 s of pings and ${rounds} requests without a reconnect`, () => assert.strictEqual(WebSocket.opened, openedBefore))

  client.close()
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
}

main().catch(err => {
  console.log('FAIL unexpected: ' + (err && err.stack))
  console.log(`${passed} passed, ${failed + 1} failed`)
  process.exit(1)
})
