// Share links: what each opens, its link, expiry and download right; copy or revoke.
import {api, button, el, notify, showError} from "./api.js";

const body = document.getElementById("shares");

function what(share) {
  if (share.album) return `Album ${share.album_title || share.album}`;
  if (share.media) return `Photo ${share.media_name || share.media}`;
  return share.title || "Share";
}

async function load() {
  let shares = [];
  try {
    let next = "/api/v1/shares/";
    while (next) {
      const data = await api(next);
      shares.push(...(data.results || data));
      next = data.next || null;
    }
  } catch (error) {
    showError(error, "Could not list your shares");
    body.replaceChildren(el("tr", {}, el("td", {colspan: 5}, "The shares could not be loaded.")));
    return;
  } finally {
    body.parentElement.setAttribute("aria-busy", "false");
  }
  shares = shares.filter((share) => !share.revoked_at);
  document.getElementById("empty").hidden = shares.length > 0;
  body.replaceChildren(...shares.map((share) => {
    const url = new URL(share.url || `/s/${share.token}/`, location.href).href;
    return el("tr", {},
      el("td", {}, what(share)),
      el("td", {}, el("a", {href: url}, url)),
      el("td", {}, share.expires_at ? new Date(share.expires_at).toLocaleString() : "Never",
        share.has_password ? " · password" : ""),
      el("td", {}, share.allow_download ? "Allowed" : "No"),
      el("td", {}, button("Copy link", () => navigator.clipboard.writeText(url).then(() => notify("Link copied"),
        (error) => showError(error, "Could not copy"))), " ", button("Revoke", () => revoke(share))));
  }));
}

async function revoke(share) {
  try {
    await api(`/api/v1/shares/${share.id}/`, {method: "DELETE"});
    notify("Link revoked");
    load();
  } catch (error) {
    showError(error, "Could not revoke the link");
  }
}

load();
