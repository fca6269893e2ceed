// Stand-in for the `async-unwrap` npm package: `await promise[unwrap]` gives [err, result].
const unwrap = Symbol('async-unwrap')
Object.defineProperty(Promise.prototype, unwrap, {
  get () { return this.then(result => [null, result], err => [err, null]) }
})
module.exports = unwrap
