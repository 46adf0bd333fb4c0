// Array parameters as Postgres array literals, for the hot paths' arrays of
// values that never need quoting: integers, int8 as decimal text, uuids.
// node-postgres quotes and escapes every element of an array parameter
// (prepareValue, escapeElement, arrayString): with acks of 100 keys that was
// ~1 µs of the gateway's CPU a message (--cpu-prof of the pull and push
// drains). The statement casts the text ($2::bigint[]), as it did the array.

/** `{a,b,c}`: only for values whose text has no comma, brace, quote, backslash or space. */
export function plainArray(values: ReadonlyArray<string | number>): string {
  return `{${values.join(',')}}`;
}
