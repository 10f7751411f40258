// What the two pages share: the token (asked for only when the gateway
// refuses without one, kept in this tab's sessionStorage, never embedded in
// a page) and a tiny element builder.

const TOKEN_KEY = "streamgate.token";

/** The token this tab was given, if any. */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || undefined;
}

/** Ask for a token (the gateway has auth on), keep it for this tab, and
 * resolve with it. `reason` says why (the gateway's refusal). */
export function askToken(reason) {
  let dialog = document.getElementById("token-dialog");
  if (!dialog) {
    dialog = el("dialog", { id: "token-dialog" },
      el("form", { method: "dialog" },
        el("h2", {}, "This gateway needs a token"),
        el("p", { id: "token-reason", class: "muted" }),
        el("label", {}, "JWT ", el("input", { id: "token-input", type: "password", autocomplete: "off", required: "" })),
        el("p", { class: "muted" }, "Kept in this tab only (sessionStorage); sent in the Socket.IO handshake and as Authorization: Bearer."),
        el("button", { id: "token-submit", value: "ok" }, "Connect")));
    document.body.append(dialog);
  }
  document.getElementById("token-reason").textContent = reason;
  const input = document.getElementById("token-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", function onClose() {
      const token = input.value.trim();
      if (!token) {
        dialog.showModal();
        return;
      }
      dialog.removeEventListener("close", onClose);
      sessionStorage.setItem(TOKEN_KEY, token);
      resolve(token);
    });
    dialog.showModal();
    input.focus();
  });
}

/** `Authorization` header for fetch, when a token is set. */
export function authHeaders() {
  const token = getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** document.createElement with attributes and children (strings are text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}
