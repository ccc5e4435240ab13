// Settings: plan and a usage bar by kind (/api/v1/me/, /api/v1/usage/), and API keys
// (/api/v1/keys/: create with the secret shown once, revoke).
import {api, button, el, human, notify, showError} from "./api.js";

const KINDS = {image: "Photos", video: "Videos", audio: "Audio", document: "Documents", other: "Other"};

async function usage() {
  const box = document.getElementById("usage");
  try {
    const [me, use] = await Promise.all([api("/api/v1/me/"), api("/api/v1/usage/")]);
    const quota = use.quota || 0;
    const bar = el("div", {class: "usage-bar", role: "img",
      "aria-label": `${human(use.used)} used of ${quota ? human(quota) : "unlimited"}`});
    const legend = el("ul", {class: "usage-legend"});
    for (const [kind, label] of Object.entries(KINDS)) {
      const part = (use.by_kind || {})[kind];
      if (!part || !part.bytes) continue;
      const segment = el("span", {class: `seg ${kind}`});
      segment.style.width = `${quota ? Math.min(100, (part.bytes / quota) * 100) : 0}%`;
      bar.append(segment);
      legend.append(el("li", {}, el("span", {class: `swatch ${kind}`, "aria-hidden": "true"}), `${label}: ${part.count} · ${human(part.bytes)}`));
    }
    if (use.trash && use.trash.bytes) legend.append(el("li", {}, `In the trash: ${human(use.trash.bytes)}`));
    box.replaceChildren(
      el("p", {}, `Plan: `, el("strong", {}, me.plan || "none"), ` · ${human(use.used)} used of ${quota ? human(quota) : "unlimited"}` +
        (use.reserved ? ` · ${human(use.reserved)} reserved by uploads in progress` : "")),
      bar, legend);
  } catch (error) {
    showError(error, "Could not load your storage");
    box.replaceChildren(el("p", {class: "error"}, "Storage figures could not be loaded."));
  } finally {
    box.setAttribute("aria-busy", "false");
  }
}

const keysBody = document.getElementById("keys");

async function keys() {
  let data;
  try {
    data = await api("/api/v1/keys/");
  } catch (error) {
    showError(error, "Could not list your API keys");
    return;
  }
  const rows = data.results.map((key) => el("tr", {},
    el("td", {}, key.name),
    el("td", {}, el("code", {}, `chip_${key.prefix}_…`)),
    el("td", {}, key.scopes.includes("media.read_write") ? "Read and write" : "Read only"),
    el("td", {}, new Date(key.created_at).toLocaleDateString()),
    el("td", {}, key.last_used_at ? new Date(key.last_used_at).toLocaleString() : "Never"),
    el("td", {}, key.revoked_at ? "Revoked" : button("Revoke", () => revoke(key), "small"))));
  keysBody.replaceChildren(...rows);
  if (!rows.length) keysBody.replaceChildren(el("tr", {}, el("td", {colspan: 6}, "No API keys yet.")));
}

async function revoke(key) {
  try {
    await api(`/api/v1/keys/${key.id}/`, {method: "DELETE"});
    notify(`${key.name} revoked`);
    keys();
  } catch (error) {
    showError(error, "Could not revoke the key");
  }
}

document.getElementById("key-create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    const key = await api("/api/v1/keys/", {method: "POST", body: {name: form.name.value.trim(), scopes: [form.scope.value]}});
    document.getElementById("key-secret").hidden = false;
    document.getElementById("key-secret-value").textContent = key.secret;
    form.reset();
    keys();
  } catch (error) {
    showError(error, "Could not create the key");
  }
});

document.getElementById("key-secret-copy").addEventListener("click", () => {
  navigator.clipboard.writeText(document.getElementById("key-secret-value").textContent)
    .then(() => notify("Key copied"), (error) => showError(error, "Could not copy"));
});

usage();
keys();
