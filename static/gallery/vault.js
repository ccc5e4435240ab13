// The vault page: set up (the recovery key shown once), unlock with the passphrase or the
// recovery key, lock, the auto-lock time, a grid of its items, uploads into it and moving
// items back to the library. Everything goes through /api/v1/vault/.
import {api, button, el, human, notify, showError} from "./api.js";
import {mediaPage, Selection} from "./grid.js";
import {Lightbox} from "./lightbox.js";
import {each} from "./selection.js";

const $ = (id) => document.getElementById(id);
const sections = ["vault-setup", "vault-recovery", "vault-unlock", "vault-open"];
let page = null;
let lockTimer = null;

function show(id) {
  for (const s of sections) $(s).hidden = s !== id;
}

async function refresh() {
  let status;
  try {
    status = await api("/api/v1/vault/");
  } catch (error) {
    showError(error, "Could not read the vault's state");
    $("vault-state").replaceChildren(el("p", {class: "error"}, "The vault is not available."));
    return;
  } finally {
    $("vault-state").setAttribute("aria-busy", "false");
  }
  if (!status.exists) {
    $("vault-state").replaceChildren(el("p", {}, "You have no vault yet."));
    show("vault-setup");
    return;
  }
  const summary = `${status.count} item${status.count === 1 ? "" : "s"}, ${human(status.bytes)}`;
  if (!status.unlocked) {
    if (page) page.grid.setSections([]); // nothing of the vault stays on a locked page
    $("vault-state").replaceChildren(el("p", {}, `Locked · ${summary}`));
    show("vault-unlock");
    return;
  }
  $("vault-state").replaceChildren(el("p", {}, `Unlocked · ${summary}`));
  show("vault-open");
  autolock(status.unlocked_until);
  await grid();
}

function autolock(until) {
  clearTimeout(lockTimer);
  if (!until) {
    $("vault-autolock").textContent = "";
    return;
  }
  const when = new Date(until);
  $("vault-autolock").textContent = `Locks by itself at ${when.toLocaleTimeString()} unless you keep using it.`;
  lockTimer = setTimeout(refresh, Math.max(1000, when - Date.now() + 1000));
}

const selection = new Selection(() => {
  if (page) page.grid.repaint();
  bar.hidden = selection.size === 0;
  count.textContent = `${selection.size} selected`;
});
const count = el("span", {class: "count", "aria-live": "polite"});
const removeSelected = async (call, message) => {
  const done = await each(selection.list(), call);
  for (const id of done) page.grid.remove(id);
  if (done.length) notify(`${done.length} ${message}`);
  selection.clear();
  page.grid.relayout();
};
const bar = el("div", {class: "selection-bar", role: "toolbar", "aria-label": "Selection", hidden: true}, count,
  button("Move to library", () => removeSelected((id) => api(`/api/v1/vault/media/${id}/move-to-library`, {method: "POST"}), "moved to the library")),
  button("Delete", () => removeSelected((id) => api(`/api/v1/vault/media/${id}/`, {method: "DELETE"}), "deleted")),
  button("Clear selection", () => selection.clear()));
document.body.append(bar);

async function grid() {
  const url = "/api/v1/vault/media/?page_size=500";
  try {
    if (page) await page.reload(url);
    else page = await mediaPage($("vault-grid"), url, {selection, Lightbox, onCount: (n) => { $("empty").hidden = n > 0; }});
  } catch (error) {
    showError(error, "Could not list the vault");
  }
}

$("setup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  if (form.passphrase.value !== form.passphrase2.value) {
    showError(new Error("The two passphrases differ."));
    return;
  }
  try {
    const data = await api("/api/v1/vault/setup", {method: "POST", body: {passphrase: form.passphrase.value}});
    form.reset();
    $("recovery-key").textContent = data.recovery_key;
    show("vault-recovery");
    $("recovery-copy").focus();
  } catch (error) {
    showError(error, "Could not set up the vault");
  }
});

$("recovery-copy").addEventListener("click", () => {
  navigator.clipboard.writeText($("recovery-key").textContent).then(() => notify("Recovery key copied"),
    (error) => showError(error, "Could not copy"));
});
$("recovery-done").addEventListener("click", () => {
  $("recovery-key").textContent = "";
  refresh();
});

$("unlock-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = form.recovery_key.value.trim() ? {recovery_key: form.recovery_key.value.trim()} : {passphrase: form.passphrase.value};
  try {
    await api("/api/v1/vault/unlock", {method: "POST", body});
    form.reset();
    refresh();
  } catch (error) {
    const message = error.status === 403 ? "Wrong passphrase or recovery key" :
      error.status === 429 ? "Too many attempts: wait a minute" : "Could not unlock";
    showError(error, message);
  }
});

$("vault-lock").addEventListener("click", async () => {
  try {
    await api("/api/v1/vault/lock", {method: "POST"});
  } catch (error) {
    showError(error, "Could not lock");
  }
  selection.clear();
  refresh();
});

$("vault-upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("vault-files");
  const list = $("vault-upload-list");
  for (const file of input.files) {
    const bar = el("progress", {max: file.size || 1, value: 0, "aria-label": `Uploading ${file.name}`});
    const status = el("span", {class: "status"}, "waiting");
    list.append(el("li", {}, el("span", {class: "name"}, file.name), bar, status));
    const form = new FormData();
    form.append("file", file);
    form.append("vault", "true");
    await new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/media/");
      xhr.setRequestHeader("X-CSRFToken", document.body.dataset.csrf);
      xhr.upload.onprogress = (e) => { bar.value = e.loaded; status.textContent = `${Math.floor((e.loaded / (e.total || 1)) * 100)}%`; };
      xhr.onload = () => {
        if (xhr.status < 300) status.textContent = "done";
        else {
          let detail = `${xhr.status}`;
          try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (e) { /* not JSON */ }
          status.textContent = detail;
          showError(new Error(detail), `${file.name} was not uploaded`);
        }
        resolve();
      };
      xhr.onerror = () => { status.textContent = "failed"; showError(new Error("network error"), file.name); resolve(); };
      xhr.send(form);
    });
  }
  input.value = "";
  refresh();
});

refresh();
