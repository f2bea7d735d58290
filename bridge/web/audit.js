// Auditor view: the ledger rebuilt from chain events by the bridge's audit, its verdict with each
// discrepancy named, totals per twin, brand and month, and CSV downloads.
import { api, brandLabel, brandNames, errorText, h, loading, proof, setChain, shortHex, table, usd } from "./lib.js";

const $ = (id) => document.getElementById(id);

const SUMMARY = [
  ["twins", "Twins", false],
  ["licenses", "Licenses (twin, brand)", false],
  ["license_versions", "License versions accepted", false],
  ["license_offers_pending", "Offers waiting for acceptance", false],
  ["license_offers_declined", "Offers declined by the brand", false],
  ["brands_with_own_limits", "Brands with their own spending limits", false],
  ["brands_with_own_attester", "Brands with their own attester", false],
  ["usages", "Usages settled", false],
  ["usages_paid", "Usages paid", false],
  ["usages_rejected", "Usages rejected", false],
  ["amount_paid", "Amount paid for usages", true],
  ["batches", "Settlement batches", false],
  ["batches_verified", "Batches verified (digest, signer, role)", false],
  ["deposited", "Escrow deposited", true],
  ["escrow", "Escrow held", true],
  ["debt_outstanding", "Debt outstanding", true],
  ["royalties_distributed", "Royalties distributed", true],
  ["paid_out", "Paid out to payees", true],
  ["accrued", "Royalties accrued on twins", true],
  ["claimable", "Claimable by payees", true],
  ["liabilities", "Owed in total", true],
  ["balance_checks", "Balance checks against the ledger", false],
  ["discrepancies", "Discrepancies", false],
];

export function showAudit() {
  $("run-audit").addEventListener("click", () => run());
  run();
}

function last(row) {
  return row.last_tx_hash ? proof({ tx_hash: row.last_tx_hash, block_number: row.last_block }, "latest transaction counted") : "—";
}

async function run() {
  const box = $("audit-body");
  const button = $("run-audit");
  button.disabled = true;
  box.replaceChildren(loading("Rebuilding the ledger from its events…"));
  try {
    const [audit, names] = await Promise.all([api("/v1/audit"), brandNames()]);
    setChain(audit.chain_id);
    box.replaceChildren(...render(audit, names).filter(Boolean));
  } catch (err) {
    box.replaceChildren(errorText(`The audit could not run: ${err.message}`));
  } finally {
    button.disabled = false;
  }
}

function render(a, names) {
  const s = a.summary;
  const verdict = a.clean
    ? h("p", { class: "verdict clean", id: "verdict" }, `Clean: the ledger's state is what its events say (blocks ${a.from_block}–${a.to_block}).`)
    : h("p", { class: "verdict bad", id: "verdict" }, `${a.discrepancies.length} discrepanc${a.discrepancies.length === 1 ? "y" : "ies"} found (blocks ${a.from_block}–${a.to_block}).`);
  const summaryRows = SUMMARY.map(([key, label, money]) => [
    label,
    h("span", { "data-key": key, "data-value": String(s[key]) }, money ? usd(String(s[key])) : Number(s[key]).toLocaleString("en-US")),
    a.summary_sources[key] ? proof(a.summary_sources[key], `latest transaction counted in ${label}`) : "—",
  ]);
  const csv = h("select", { id: "csv-table", "aria-label": "CSV table" }, a.csv_tables.map((t) => h("option", { value: t }, `${t}.csv`)));
  const download = h("a", { id: "csv-link", href: `/v1/audit/csv?table=usages&to_block=${a.to_block}`, download: "" }, "Download CSV");
  csv.addEventListener("change", () => {
    download.href = `/v1/audit/csv?table=${csv.value}&to_block=${a.to_block}`;
  });
  return [
    verdict,
    a.discrepancies.length
      ? h("ul", { id: "discrepancies" }, a.discrepancies.map((d) => h("li", {}, h("strong", {}, `${d.kind}: `), d.message)))
      : null,
    h("p", { class: "small" }, "Ledger ", h("code", {}, a.ledger), ` on chain ${a.chain_id}, audited through block `,
      h("strong", { id: "audit-block" }, String(a.to_block)), a.to_block_hash ? [" (", h("code", { title: a.to_block_hash }, shortHex(a.to_block_hash)), ")"] : null,
      a.resumed_from !== null ? `, resumed from block ${a.resumed_from}` : ""),
    h("div", { class: "card" }, h("label", { for: "csv-table" }, "Export a table"), csv, " ", download),
    table("Summary (the same figures as twin-bridge audit)", [{ label: "What" }, { label: "Count / amount", num: true }, { label: "Latest proof" }], summaryRows, "", { stack: false }),
    table("Per twin", [{ label: "Twin" }, { label: "Usages", num: true }, { label: "Paid", num: true }, { label: "Rejected", num: true },
      { label: "Amount paid", num: true }, { label: "Latest proof" }],
    a.totals.twins.map((r) => [`#${r.twin_id}`, String(r.usages), String(r.usages_paid), String(r.usages_rejected), usd(r.amount_paid), last(r)]),
    "No usage settled yet."),
    table("Per brand", [{ label: "Brand" }, { label: "Usages", num: true }, { label: "Amount paid", num: true },
      { label: "Escrow", num: true }, { label: "Debt", num: true }, { label: "Latest proof" }],
    a.totals.brands.map((r) => [brandLabel(names, r.brand), String(r.usages), usd(r.amount_paid), usd(r.escrow), usd(r.debt), last(r)]),
    "No usage settled yet."),
    table("Per month of settlement", [{ label: "Month" }, { label: "Usages", num: true }, { label: "Paid", num: true },
      { label: "Amount paid", num: true }, { label: "Latest proof" }],
    a.totals.months.map((r) => [r.month, String(r.usages), String(r.usages_paid), usd(r.amount_paid), last(r)]),
    "No usage settled yet."),
    a.failed_checks.length
      ? table("Failed balance checks", [{ label: "Check" }, { label: "Subject" }, { label: "Rebuilt" }, { label: "On chain" }],
        a.failed_checks.map((c) => [c.kind, h("code", {}, c.subject), c.rebuilt, c.on_chain]))
      : null,
  ];
}
