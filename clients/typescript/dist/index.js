// The SDK's public surface: `connect()` a gateway, `stream()` on it, read
// the stream with `for await`. Everything else is types.
export { connect, namespaceUrl, Gateway } from "./gateway.js";
export { ACK_EVERY_MS, ACK_EVERY_TOKENS, isRetryable, Stream } from "./stream.js";
export { Assembly, PositionGate } from "./assembly.js";
export { GatewayHttpError, sessions } from "./sessions.js";
