// The albums page: covers and titles (Favourites first), create, rename.
import {api, button, el, pages, showError} from "./api.js";
import {pickVariant} from "./media.js";
import {ask} from "./selection.js";

const list = document.getElementById("albums");

function coverOf(album) {
  const cover = album.cover;
  if (!cover) return null;
  if (typeof cover === "string") return cover;
  if (cover.url) return cover.url;
  const v = pickVariant(cover, 240, 240, {square: true});
  return v ? v.url : null;
}

function isFavourites(album) {
  return album.favourites === true || album.is_favourites === true || album.kind === "favourites";
}

async function load() {
  list.setAttribute("aria-busy", "true");
  let albums = [];
  try {
    for await (const data of pages("/api/v1/albums/?page_size=500")) albums.push(...(data.results || data));
  } catch (error) {
    showError(error, "Could not list the albums");
    list.replaceChildren(el("li", {class: "error"}, "The albums could not be loaded."));
    return;
  } finally {
    list.setAttribute("aria-busy", "false");
  }
  albums = albums.sort((a, b) => Number(isFavourites(b)) - Number(isFavourites(a)));
  list.replaceChildren(...albums.map((album) => {
    const url = coverOf(album);
    const count = album.count ?? album.media_count;
    return el("li", {class: "album-card"},
      el("a", {href: `/albums/${album.id}/`},
        url ? el("img", {src: url, alt: "", loading: "lazy"}) : el("span", {class: "cover-empty", "aria-hidden": "true"}, "▢"),
        el("span", {class: "album-title"}, album.title),
        count !== undefined ? el("span", {class: "muted"}, `${count} item${count === 1 ? "" : "s"}`) : null),
      isFavourites(album) ? null : button("Rename", () => rename(album), "small"));
  }));
  if (!albums.length) list.replaceChildren(el("li", {class: "empty"}, "No albums yet."));
}

async function rename(album) {
  const input = el("input", {type: "text", name: "title", id: "ask-rename", required: true, maxlength: 200});
  input.value = album.title;
  const values = await ask(`Rename ${album.title}`, [el("label", {for: "ask-rename"}, "Title"), input], "Rename");
  if (!values) return;
  try {
    await api(`/api/v1/albums/${album.id}/`, {method: "PATCH", body: {title: values.title.trim()}});
    load();
  } catch (error) {
    showError(error, "Could not rename the album");
  }
}

document.getElementById("album-create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    await api("/api/v1/albums/", {method: "POST", body: {title: form.title.value.trim()}});
    form.reset();
    load();
  } catch (error) {
    showError(error, "Could not create the album");
  }
});

load();
