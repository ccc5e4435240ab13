// One album: its grid with the lightbox, rename, share, delete, and removing a selection.
import {api, button, el, notify, showError} from "./api.js";
import {mediaPage, Selection} from "./grid.js";
import {Lightbox} from "./lightbox.js";
import {ask} from "./selection.js";

const root = document.getElementById("album-grid");
const id = root.dataset.album;
const title = document.getElementById("album-name");
let album = null;
let page = null;

const selection = new Selection(() => {
  if (page) page.grid.repaint();
  bar.hidden = selection.size === 0;
  count.textContent = `${selection.size} selected`;
});
const count = el("span", {class: "count", "aria-live": "polite"});
const bar = el("div", {class: "selection-bar", role: "toolbar", "aria-label": "Selection", hidden: true}, count,
  button("Remove from album", async () => {
    const ids = selection.list();
    try {
      await api(`/api/v1/albums/${id}/media/`, {method: "POST", body: {remove: ids}});
    } catch (error) {
      showError(error, "Could not remove them");
      return;
    }
    for (const mediaId of ids) page.grid.remove(mediaId);
    selection.clear();
    page.grid.relayout();
  }),
  button("Clear selection", () => selection.clear()));
document.body.append(bar);

async function start() {
  try {
    album = await api(`/api/v1/albums/${encodeURIComponent(id)}/`);
  } catch (error) {
    showError(error, "Could not open the album");
    title.textContent = "Album not available";
    return;
  }
  title.textContent = album.title;
  document.title = `${album.title} · Chipmunk`;
  page = await mediaPage(root, `/api/v1/albums/${encodeURIComponent(id)}/media/?page_size=500`, {
    selection, Lightbox,
    onCount: (n) => {
      document.getElementById("count").textContent = `${n} item${n === 1 ? "" : "s"}`;
      document.getElementById("empty").hidden = n > 0;
    },
  });
}

document.getElementById("album-rename").addEventListener("click", async () => {
  const input = el("input", {type: "text", name: "title", id: "ask-rename", required: true, maxlength: 200});
  input.value = album ? album.title : "";
  const values = await ask("Rename album", [el("label", {for: "ask-rename"}, "Title"), input], "Rename");
  if (!values) return;
  try {
    album = await api(`/api/v1/albums/${id}/`, {method: "PATCH", body: {title: values.title.trim()}});
    title.textContent = album.title;
  } catch (error) {
    showError(error, "Could not rename the album");
  }
});

document.getElementById("album-share").addEventListener("click", async () => {
  try {
    const share = await api("/api/v1/shares/", {method: "POST", body: {album: album ? album.id : id, allow_download: true}});
    const url = new URL(share.url, location.href).href;
    const out = document.getElementById("share-result");
    out.hidden = false;
    out.replaceChildren("Share link: ", el("a", {href: url, class: "share-url"}, url), " ",
      button("Copy link", () => navigator.clipboard.writeText(url).then(() => notify("Link copied"))));
  } catch (error) {
    showError(error, "Could not share the album");
  }
});

document.getElementById("album-delete").addEventListener("click", async () => {
  const values = await ask(`Delete the album ${album ? album.title : ""}? Its photos stay in your library.`, [], "Delete album");
  if (!values) return;
  try {
    await api(`/api/v1/albums/${id}/`, {method: "DELETE"});
    location.href = "/albums/";
  } catch (error) {
    showError(error, "Could not delete the album");
  }
});

start().catch((error) => showError(error, "Could not load the album"));
