// The SDK's public surface: `connect()` a gateway, `stream()` on it, read
// the stream with `for await`. Everything else is types.

export { connect, namespaceUrl, Gateway } from "./gateway.js";
export type {
  ConnectOptions,
  GatewayCounters,
  GatewayEvents,
  GatewayFailure,
  GatewaySocket,
  GatewayState,
  StreamOptions,
  TokenSource,
} from "./gateway.js";
export { ACK_EVERY_MS, ACK_EVERY_TOKENS, isRetryable, Stream } from "./stream.js";
export type {
  CancelledEvent,
  DoneEvent,
  ErrorCode,
  FailureEvent,
  Reader,
  SdkErrorCode,
  StreamEvent,
  StreamFailure,
  StreamPhase,
  StreamResult,
  TerminalEvent,
} from "./stream.js";
export { Assembly, PositionGate } from "./assembly.js";
export { GatewayHttpError, sessions } from "./sessions.js";
export type { HttpOptions, SessionsApi } from "./sessions.js";
export type * from "./protocol.js";
