// Model view: connect a wallet (EIP-1193), see twins, licenses, usages and earnings, sign owner
// actions (EIP-712, each naming its owner) that the bridge relays: offer a license (payable once
// the brand accepts it), revoke a named version, pause, set payees; withdraw.
import {
  USAGE_TYPES,
  api,
  barChart,
  brandLabel,
  brandNames,
  ensureChain,
  errorText,
  h,
  isoDateTime,
  loading,
  notify,
  pollAction,
  proof,
  setChain,
  shortHex,
  state,
  table,
  toUnits,
  unixDate,
  usd,
  wallet,
  walletReason,
  words,
} from "./lib.js";

const DAY = 86400;
const ZERO_HASH = `0x${"0".repeat(64)}`;
const PAGE = 20;

let account = null;
let twins = [];
let types = null;
let names = new Map();
let watching = false;

const $ = (id) => document.getElementById(id);

export function initModel() {
  const grid = $("offer-prices");
  for (const type of USAGE_TYPES) {
    const id = `price-${type}`;
    grid.append(
      h("div", {}, h("label", { for: id }, type.replaceAll("_", " ")),
        h("input", { id, name: id, type: "text", inputmode: "decimal", autocomplete: "off", placeholder: "—" })),
    );
    $("filter-type").append(h("option", { value: type }, type.replaceAll("_", " ")));
  }
  for (const form of document.querySelectorAll("#view-model form.card")) {
    form.append(h("p", { class: "error", role: "alert" }));
  }
  $("connect").addEventListener("click", connect);
  $("withdraw").addEventListener("click", withdraw);
  $("usage-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsages();
  });
  $("form-offer").addEventListener("submit", (e) => submitForm(e, "OfferLicense", offerMessage));
  $("form-revoke").addEventListener("submit", (e) => submitForm(e, "RevokeLicense", revokeMessage));
  $("form-pause").addEventListener("submit", (e) => submitForm(e, "SetTwinPaused", pauseMessage));
  $("form-payees").addEventListener("submit", (e) => submitForm(e, "SetPayees", payeesMessage));
}

async function connect() {
  const error = $("wallet-error");
  error.textContent = "";
  try {
    wallet();
  } catch (err) {
    error.textContent = err.message;
    return;
  }
  $("connect").disabled = true;
  try {
    const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
    if (!accounts || !accounts.length) throw new Error("the wallet gave no account");
    account = accounts[0];
  } catch (err) {
    error.textContent = walletReason(err, "the connection");
    $("connect").disabled = false;
    return;
  }
  $("connect").disabled = false;
  $("connect").textContent = "Reconnect";
  if (!watching && typeof window.ethereum.on === "function") {
    watching = true;
    window.ethereum.on("accountsChanged", (accounts) => {
      if (accounts && accounts.length && accounts[0] !== account) connect();
    });
  }
  $("wallet-state").replaceChildren("Connected: ", h("code", { id: "account" }, account));
  $("model-body").hidden = false;
  try {
    types = await api("/v1/owner-actions/types");
    setChain(types.domain.chainId);
  } catch (err) {
    error.textContent = `The bridge cannot relay actions now: ${err.message}`;
  }
  await refresh();
}

/** Reloads twins, balances, the chart and the usage history. */
export async function refresh() {
  $("twins").replaceChildren(loading("Loading your twins…"));
  try {
    const page = await api(`/v1/twins?owner=${account}&limit=500`);
    twins = page.items;
  } catch (err) {
    $("twins").replaceChildren(errorText(`Could not load your twins: ${err.message}`));
    return;
  }
  names = await brandNames();
  $("brand-list").replaceChildren(...[...names].map(([address, name]) => h("option", { value: address }, name)));
  renderTwins();
  for (const select of document.querySelectorAll(".twin-select")) {
    const previous = select.value;
    select.replaceChildren(...twins.map((t) => h("option", { value: t.twin_id }, `Twin #${t.twin_id}`)));
    if (previous && twins.some((t) => String(t.twin_id) === previous)) select.value = previous;
  }
  await Promise.all([loadMoney(), loadUsages()]);
}

function renderTwins() {
  if (!twins.length) {
    $("twins").replaceChildren(h("p", {}, "This wallet owns no twin. The studio that captured your twin mints it to your wallet."));
    return;
  }
  $("twins").replaceChildren(...twins.map(renderTwin));
}

function renderTwin(twin) {
  const payees = twin.payees.payees.map((p) => `${shortHex(p.account)} ${p.bps / 100} %`);
  const licenses = twin.licenses.map((lic) => {
    const v = lic.current;
    return [
      brandLabel(names, lic.brand),
      String(lic.current_version),
      v.prices.map((p) => h("div", {}, `${words(p.usage_type || `type ${p.usage_type_code}`)}: ${usd(p.price)}`)),
      `${unixDate(v.valid_from)} → ${unixDate(v.valid_until)}`,
      v.max_uses ? `${v.uses} of ${v.max_uses}` : `${v.uses} (no cap)`,
      h("code", { title: v.consent_hash }, shortHex(v.consent_hash)),
      state(lic.state),
      proof(v.source, "license accepted"),
    ];
  });
  return h(
    "article",
    { class: "card twin", "data-twin": twin.twin_id, "aria-labelledby": `twin-${twin.twin_id}` },
    h("h4", { id: `twin-${twin.twin_id}` }, `Twin #${twin.twin_id} `, state(twin.pause.paused ? "paused" : "active")),
    h("p", { class: "small" }, "Metadata ", h("code", {}, twin.metadata_uri), " · consent record ",
      h("code", { title: twin.consent_hash }, shortHex(twin.consent_hash)), " · minted ", proof(twin.minted, "minted")),
    h("p", { class: "small" }, `Payees: ${payees.length ? payees.join(", ") : "none"}; you keep ${twin.payees.owner_bps / 100} %`,
      twin.payees.source ? [" · ", proof(twin.payees.source, "payees set")] : null),
    table(
      `Licenses of twin #${twin.twin_id}`,
      [{ label: "Brand" }, { label: "Version", num: true }, { label: "Prices per use" }, { label: "Valid" },
        { label: "Uses" }, { label: "Consent hash" }, { label: "State" }, { label: "Proof" }],
      licenses,
      "No license accepted yet.",
    ),
  );
}

/** The owner's part of a twin's undistributed royalties (payees' shares rounded down). */
function ownerShare(undistributed, twin) {
  let rest = undistributed;
  for (const payee of twin.payees.payees) rest -= (undistributed * BigInt(payee.bps)) / 10000n;
  return rest;
}

async function loadMoney() {
  $("claimable").textContent = "…";
  $("earnings-chart").replaceChildren(loading("Loading earnings…"));
  try {
    const [mine, ...perTwin] = await Promise.all([
      api(`/v1/payees/${account}/earnings?period=month`),
      ...twins.map((t) => api(`/v1/twins/${t.twin_id}/earnings?period=month`)),
    ]);
    let accrued = 0n;
    const months = new Map();
    perTwin.forEach((earnings, i) => {
      accrued += ownerShare(BigInt(earnings.totals.undistributed), twins[i]);
      for (const p of earnings.periods) months.set(p.period, (months.get(p.period) || 0n) + BigInt(p.accrued));
    });
    const claimable = BigInt(mine.totals.claimable) + accrued;
    $("claimable").textContent = usd(claimable);
    $("claimable").dataset.units = String(claimable);
    $("accrued").textContent = `${usd(mine.totals.claimable)} split to you, ${usd(accrued)} your share still on your twins; ${usd(mine.totals.paid_out)} paid out so far.`;
    $("withdraw").disabled = claimable === 0n;
    const points = [...months.entries()].sort().map(([label, value]) => ({ label, value }));
    $("earnings-chart").replaceChildren(barChart("Royalties credited to your twins by month", points));
  } catch (err) {
    $("claimable").textContent = "—";
    $("earnings-chart").replaceChildren(errorText(`Could not load earnings: ${err.message}`));
  }
}

async function loadUsages(next) {
  const box = $("usages");
  box.replaceChildren(loading("Loading usage history…"));
  const form = new FormData($("usage-filter"));
  let path = next;
  if (!path) {
    const query = new URLSearchParams({ limit: PAGE });
    for (const [name, value] of form.entries()) if (value) query.set(name, value);
    if (!query.get("twin_id")) {
      box.replaceChildren(h("p", { class: "small" }, "No twin to show usages of."));
      return;
    }
    path = `/v1/usages?${query}`;
  }
  try {
    const page = await api(path);
    const rows = page.items.map((u) => [
      isoDateTime(u.used_at),
      `#${u.twin_id}`,
      brandLabel(names, u.brand),
      words(u.usage_type || String(u.usage_type_code)),
      String(u.quantity),
      h("span", { title: u.sentence }, state(u.code)),
      u.recorded_as_debt && BigInt(u.recorded_as_debt) > 0n
        ? h("span", { title: `${usd(u.paid_from_escrow)} from escrow, ${usd(u.recorded_as_debt)} owed by the brand` },
          usd(u.amount), h("span", { class: "small" }, ` (${usd(u.recorded_as_debt)} owed)`))
        : usd(u.amount),
      proof({ ...u, block_time: u.settled_at }, `usage ${u.usage_id}`),
    ]);
    box.replaceChildren(
      table("Settled usages, oldest first", [{ label: "Used at" }, { label: "Twin" }, { label: "Brand" },
        { label: "Type" }, { label: "Qty", num: true }, { label: "Outcome" }, { label: "Royalty", num: true },
        { label: "Proof" }], rows, "No settled usage matches."),
      h("div", { class: "pager" },
        next ? h("button", { type: "button", onclick: () => loadUsages() }, "First page") : null,
        page.next ? h("button", { type: "button", onclick: () => loadUsages(page.next) }, "Next page") : null),
    );
  } catch (err) {
    box.replaceChildren(errorText(`Could not load usages: ${err.message}`));
  }
}

// ---------------------------------------------------------------- owner actions

async function hashOf(text) {
  const value = text.trim();
  if (!value) return ZERO_HASH;
  if (/^0x[0-9a-fA-F]{64}$/.test(value)) return value.toLowerCase();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  return `0x${[...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function address(value, what) {
  const text = String(value || "").trim();
  if (!/^0x[0-9a-fA-F]{40}$/.test(text)) throw new Error(`${what} must be a 0x address of 40 hex digits`);
  return text;
}

async function offerMessage(data, now) {
  const prices = [];
  USAGE_TYPES.forEach((type, code) => {
    const units = toUnits(data.get(`price-${type}`));
    if (units !== null) {
      if (units === 0n) throw new Error(`the price of ${type.replaceAll("_", " ")} must be above 0`);
      prices.push({ usageType: code, price: Number(units) });
    }
  });
  if (!prices.length) throw new Error("give a price for at least one usage type");
  const days = Number(data.get("days"));
  if (!Number.isInteger(days) || days < 1) throw new Error("the validity must be a whole number of days");
  const maxUses = Number(data.get("max_uses"));
  if (!Number.isInteger(maxUses) || maxUses < 0) throw new Error("the cap must be a whole number");
  return {
    twinId: Number(data.get("twin")),
    terms: {
      brand: address(data.get("brand"), "the brand"),
      validFrom: 0,
      validUntil: now + days * DAY,
      maxUses,
      purposeHash: await hashOf(String(data.get("purpose") || "")),
      consentHash: await hashOf(String(data.get("consent") || "")),
      prices,
    },
  };
}

function revokeMessage(data) {
  const version = Number(data.get("version"));
  if (String(data.get("version")).trim() === "" || !Number.isInteger(version) || version < 0) {
    throw new Error("the version must be a whole number (the license's, or the waiting offer's)");
  }
  return { twinId: Number(data.get("twin")), brand: address(data.get("brand"), "the brand"), version };
}

function pauseMessage(data) {
  return { twinId: Number(data.get("twin")), paused: data.get("paused") === "true" };
}

function payeesMessage(data) {
  const payees = String(data.get("payees") || "")
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [who, share] = line.split(/[\s,:]+/);
      const bps = Math.round(Number(share) * 100);
      if (!Number.isFinite(bps) || bps <= 0 || bps > 10000) throw new Error(`"${line}": the share must be a percentage above 0`);
      return { account: address(who, "each payee"), bps };
    });
  return { twinId: Number(data.get("twin")), payees };
}

const brandName = (address) => names.get(String(address).toLowerCase()) || shortHex(address);

const DESCRIBE = {
  OfferLicense: (m) => `Offer twin #${m.twinId} to ${brandName(m.terms.brand)}`,
  RevokeLicense: (m) => `Revoke version ${m.version} of ${brandName(m.brand)} on twin #${m.twinId}`,
  SetTwinPaused: (m) => `${m.paused ? "Pause" : "Resume"} twin #${m.twinId}`,
  SetPayees: (m) => `Set ${m.payees.length} payee(s) of twin #${m.twinId}`,
  Payout: () => "Withdraw",
};

async function submitForm(event, kind, build) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = form.querySelector("p.error");
  const button = form.querySelector("button[type=submit]");
  error.textContent = "";
  button.disabled = true;
  try {
    const action = await signAndRelay(kind, (now) => build(new FormData(form), now));
    track(action);
  } catch (err) {
    error.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

/** Builds the message naming the connected account as its owner, with the next nonce and a
 * deadline, asks the wallet to sign it, relays it. */
async function signAndRelay(kind, build) {
  if (!types) types = await api("/v1/owner-actions/types");
  await ensureChain(types.domain.chainId);
  const nonce = await api(`/v1/accounts/${account}/nonce`);
  const now = Number(nonce.chain_time_unix);
  const message = { owner: account, ...(await build(now)), nonce: Number(nonce.next_nonce), deadline: now + 3600 };
  const spec = types.actions[kind];
  const typed = { types: spec.types, primaryType: kind, domain: types.domain, message };
  notify(`Asking your wallet to sign: ${DESCRIBE[kind](message)}`);
  let signature;
  try {
    signature = await window.ethereum.request({ method: "eth_signTypedData_v4", params: [account, JSON.stringify(typed)] });
  } catch (err) {
    notify("");
    throw new Error(walletReason(err, "the signature"));
  }
  try {
    const action = await api("/v1/owner-actions", { method: "POST", body: { type: kind, signer: account, message, signature } });
    notify(`${DESCRIBE[kind](message)}: accepted by the bridge.`);
    return action;
  } catch (err) {
    notify("");
    throw new Error(`The bridge refused the action: ${err.message}`);
  }
}

async function withdraw() {
  const button = $("withdraw");
  const error = button.parentElement.querySelector(".error") || button.parentElement.appendChild(h("p", { class: "error", role: "alert" }));
  error.textContent = "";
  button.disabled = true;
  try {
    const action = await api("/v1/owner-actions", {
      method: "POST",
      body: { type: "Payout", payee: account, twinIds: twins.map((t) => t.twin_id) },
    });
    track(action);
  } catch (err) {
    error.textContent = `The bridge refused the withdrawal: ${err.message}`;
    button.disabled = false;
  }
}

/** Shows an action's progress (accepted → submitted → confirmed, or failed with the reason). */
function track(action) {
  const item = h("li", { "data-action": action.id });
  $("actions").prepend(item);
  const describe = DESCRIBE[action.type] ? DESCRIBE[action.type](action.message) : action.type;
  const render = (a) => {
    const reached = ["accepted", "submitted", "confirmed"].indexOf(a.status);
    item.dataset.status = a.status;
    item.replaceChildren(...[
      h("strong", {}, `${describe} `),
      h("ol", { class: "steps", "aria-label": "progress" },
        ["accepted", "submitted", "confirmed"].map((step, i) =>
          h("li", { class: a.status === "failed" ? (i === 0 ? "done" : null) : i <= reached ? "done" : null }, step)),
        a.status === "failed" ? h("li", { class: "failed" }, "failed") : null),
      a.status === "failed" ? h("span", { class: "error" }, ` ${a.error || "the ledger refused it"}`) : null,
      a.tx_hash ? [" ", proof({ tx_hash: a.tx_hash, block_number: a.block_number }, describe)] : null,
    ].flat().filter(Boolean));
  };
  render(action);
  const poll = async () => {
    const current = await pollAction(action, render, (err) => item.append(h("span", { class: "error" }, ` (status unknown: ${err.message})`)));
    notify(`${describe}: ${current.status}${current.status === "failed" ? ` (${current.error})` : ""}.`);
    if (current.status === "confirmed") await waitIndexed(current.block_number);
    await refresh();
  };
  poll();
}

/** Waits (up to 30 s) until the indexer has passed ``block``. */
async function waitIndexed(block) {
  for (let i = 0; i < 60; i += 1) {
    try {
      const status = await api("/v1/index/status");
      if (status.block_number !== null && status.block_number >= block) return;
    } catch {
      // the next poll tells
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
