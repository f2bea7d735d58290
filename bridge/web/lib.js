// Shared helpers of the dashboard: HTTP with problem details, amounts, DOM, tables, proofs, chart.

/** The ledger's payment token as `GET /v1/token` gives it (symbol and decimals from the chain);
 * {@link loadToken} fills it before any view shows an amount. */
export const TOKEN = { symbol: "", decimals: 6 };

/** Reads the payment token's symbol and decimals from the bridge once. */
export async function loadToken() {
  const token = await api("/v1/token");
  TOKEN.symbol = token.symbol;
  TOKEN.decimals = token.decimals;
  for (const el of document.querySelectorAll("[data-token-symbol]")) el.textContent = token.symbol;
}
export const USAGE_TYPES = ["campaign_image", "video", "social_post", "print", "ecommerce", "outdoor"];

/** An error the bridge answered, with its RFC 9457 problem's detail. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** fetch() of a bridge path; JSON in and out, problems turned into ApiError. */
export async function api(path, { method = "GET", body, key } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, { detail: `the bridge did not answer (${err.message})` });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Token base units (decimal string) as "1,234.50 mUSD" (the token's symbol and decimals). */
export function usd(units) {
  if (units === null || units === undefined || units === "") return "—";
  const value = BigInt(units);
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const scale = 10n ** BigInt(TOKEN.decimals);
  const whole = (abs / scale).toLocaleString("en-US");
  if (TOKEN.decimals === 0) return `${negative ? "−" : ""}${whole} ${TOKEN.symbol}`;
  let frac = (abs % scale).toString().padStart(TOKEN.decimals, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return `${negative ? "−" : ""}${whole}.${frac} ${TOKEN.symbol}`;
}

/** A token amount typed by a person ("12.5") as base units (BigInt); null when empty; throws on bad
 * input. */
export function toUnits(text) {
  const value = String(text ?? "").trim();
  if (value === "") return null;
  const decimals = TOKEN.decimals;
  const pattern = decimals > 0 ? new RegExp(`^\\d+(\\.\\d{1,${decimals}})?$`) : /^\d+$/;
  if (!pattern.test(value)) {
    throw new Error(`"${value}" is not an amount in ${TOKEN.symbol} (up to ${decimals} decimals)`);
  }
  const [whole, frac = ""] = value.split(".");
  return BigInt(whole) * 10n ** BigInt(decimals) + BigInt(frac.padEnd(decimals, "0"));
}

export function shortHex(hex) {
  return hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-6)}` : hex || "";
}

/** A ledger time as the API gives it (RFC 3339 in UTC) as its date; the latest RFC 3339 time (a
 * license without end) reads "never". */
export function unixDate(time) {
  if (time === null || time === undefined) return "—";
  if (time.startsWith("9999-12-31")) return "never";
  return time.slice(0, 10);
}

export function isoDateTime(text) {
  return text ? text.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "—";
}

/** Element builder: h("td", {class: "num"}, "text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function loading(text) {
  return h("p", { class: "loading" }, text);
}

export function errorText(err) {
  return h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

export function state(name) {
  return h("span", { class: `state state-${name}` }, String(name).replaceAll("_", " "));
}

/** A table: columns [{label, num?}], rows of cells (nodes or text). Stacks on phones. */
export function table(caption, columns, rows, empty = "Nothing yet.", { stack = true } = {}) {
  if (!rows.length) return h("p", { class: "small" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: stack ? "stack" : null },
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", {}, row.map((cell, i) => h("td", { class: columns[i].num ? "num" : null, "data-label": columns[i].label }, cell))),
        ),
      ),
    ),
  );
}

let brands = null;

/** The bridge's brand directory: lower-case address -> name (empty when it cannot be read). */
export async function brandNames() {
  if (!brands) {
    brands = api("/v1/brands")
      .then((d) => new Map(d.items.map((b) => [b.address.toLowerCase(), b.name])))
      .catch(() => new Map());
  }
  return brands;
}

/** A brand as its name (the address in the tooltip), or its address when unknown. */
export function brandLabel(names, address) {
  const name = names.get(String(address).toLowerCase());
  return name
    ? h("span", { title: address, "data-brand": address }, name)
    : h("code", { title: address, "data-brand": address }, shortHex(address));
}

let explorer = null;

/** Where the "view on explorer" link of a proof points (by chain id). */
export function setChain(chainId) {
  explorer = { 1: "https://etherscan.io", 11155111: "https://sepolia.etherscan.io" }[Number(chainId)] || null;
}

/** A figure's proof: a button showing the transaction hash that opens its details. */
export function proof(source, label) {
  if (!source || !source.tx_hash) return h("span", { class: "small" }, "—");
  return h(
    "button",
    {
      type: "button",
      class: "link tx",
      "data-tx": source.tx_hash,
      "aria-label": `${label ? `${label}: ` : ""}transaction ${source.tx_hash}`,
      onclick: () => showProof(source),
    },
    shortHex(source.tx_hash),
  );
}

export function showProof(source) {
  const dialog = document.getElementById("tx-dialog");
  const details = document.getElementById("tx-details");
  const rows = [
    ["Transaction", h("code", {}, source.tx_hash)],
    ["Block", source.block_number ?? "—"],
    ["Log index", source.log_index ?? "—"],
    ["Block time", isoDateTime(source.block_time)],
  ];
  details.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const link = document.getElementById("tx-explorer");
  link.replaceChildren(
    explorer
      ? h("a", { href: `${explorer}/tx/${source.tx_hash}`, rel: "noopener", target: "_blank" }, "View on the block explorer")
      : h("span", { class: "small" }, "Local chain: look the transaction up with your node (eth_getTransactionReceipt)."),
  );
  dialog.showModal();
  document.getElementById("tx-close").focus();
}

/** A bar chart (SVG) of [{label, value (BigInt base units)}], values in the token. */
export function barChart(title, points) {
  if (!points.length) return h("p", { class: "small" }, "No earnings yet.");
  const width = Math.max(320, points.length * 70);
  const height = 200;
  const top = 20;
  const bottom = 30;
  const max = points.reduce((m, p) => (p.value > m ? p.value : m), 0n) || 1n;
  const band = width / points.length;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}: ${points.map((p) => `${p.label} ${usd(p.value)}`).join(", ")}`);
  const usable = height - top - bottom;
  points.forEach((p, i) => {
    const barHeight = Number((p.value * 1000n) / max) / 1000 * usable;
    const x = i * band + band * 0.2;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ class: "bar", x, y: top + usable - barHeight, width: band * 0.6, height: Math.max(barHeight, 1) })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${p.label}: ${usd(p.value)}`;
    rect.append(tip);
    const value = document.createElementNS(ns, "text");
    value.setAttribute("x", x + band * 0.3);
    value.setAttribute("y", top + usable - barHeight - 4);
    value.setAttribute("text-anchor", "middle");
    value.textContent = usd(p.value).replace(` ${TOKEN.symbol}`, "");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x + band * 0.3);
    label.setAttribute("y", height - 10);
    label.setAttribute("text-anchor", "middle");
    label.textContent = p.label;
    svg.append(rect, value, label);
  });
  return svg;
}

/** The status line at the top of the page (announced by screen readers). */
export function notify(text) {
  document.getElementById("notice").textContent = text;
}

/** Unix seconds as "2026-03-01 12:00 UTC". */
/** A ledger time as the API gives it (RFC 3339 in UTC) to the minute. */
export function unixDateTime(time) {
  if (time === null || time === undefined) return "—";
  return `${time.slice(0, 16).replace("T", " ")} UTC`;
}

/** Underscored names in words: "offer_not_accepted" -> "offer not accepted". */
export function words(name) {
  return String(name ?? "").replaceAll("_", " ");
}

/** The wallet's refusal in words (EIP-1193 error 4001 is the user saying no). */
export function walletReason(err, what) {
  if (err && (err.code === 4001 || err.code === "ACTION_REJECTED")) return `You declined ${what} in your wallet.`;
  return `Your wallet did not ${what === "the connection" ? "connect" : "sign"}: ${err?.message || err}`;
}

/** The browser's wallet (EIP-1193), or an error saying how to get one. */
export function wallet() {
  if (!window.ethereum || typeof window.ethereum.request !== "function") {
    throw new Error("No wallet found in this browser. Install a wallet such as MetaMask (any EIP-1193 wallet) and reload.");
  }
  return window.ethereum;
}

/** Asks the wallet to switch to the ledger's chain when it is on another (wallets refuse to sign
 * typed data of another chain); a wallet that cannot tell its chain is left as it is. */
export async function ensureChain(chainId) {
  let current;
  try {
    current = await wallet().request({ method: "eth_chainId" });
  } catch {
    return;
  }
  if (Number(current) === Number(chainId)) return;
  try {
    await wallet().request({ method: "wallet_switchEthereumChain", params: [{ chainId: `0x${Number(chainId).toString(16)}` }] });
  } catch (err) {
    throw new Error(`Your wallet is on chain ${Number(current)}; switch it to chain ${chainId}, the ledger's, and try again (${err?.message || err}).`);
  }
}

export const FINAL_STATUSES = new Set(["confirmed", "failed"]);

/** Polls a relayed action every second until it is confirmed or failed, calling ``onUpdate``
 * with each new state (and ``onError`` when a poll fails); resolves to the final state. */
export async function pollAction(action, onUpdate, onError = () => {}) {
  let current = action;
  while (!FINAL_STATUSES.has(current.status)) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      current = await api(`/v1/owner-actions/${action.id}`);
    } catch (err) {
      onError(err);
      continue;
    }
    onUpdate(current);
  }
  return current;
}
