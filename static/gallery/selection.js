// The bar shown while items are selected: add to album, tag, favourite, move to the vault,
// move to the trash. Each action calls the library API for the selected ids and reports
// what failed; removed items leave the grid.
import {api, button, el, notify, pages, showError} from "./api.js";

// Calls one request per id; returns the ids that succeeded and reports the failures.
export async function each(ids, call) {
  const failures = [];
  const done = [];
  for (const id of ids) {
    try {
      await call(id);
      done.push(id);
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length) {
    showError(failures[0], `${failures.length} of ${ids.length} could not be changed`);
  }
  return done;
}

// A modal <dialog> with a form; resolves with the form's values, or null when cancelled.
export function ask(title, fields, submitLabel) {
  return new Promise((resolve) => {
    const form = el("form", {method: "dialog", class: "ask"}, el("h2", {}, title), ...fields,
      el("div", {class: "ask-buttons"}, el("button", {type: "submit", value: "ok"}, submitLabel),
        el("button", {type: "submit", value: "cancel", formnovalidate: true}, "Cancel")));
    const dialog = el("dialog", {"aria-label": title}, form);
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok";
      const values = Object.fromEntries(new FormData(form));
      dialog.remove();
      resolve(ok ? values : null);
    });
    dialog.showModal();
  });
}

export async function chooseAlbum() {
  let albums = [];
  try {
    for await (const data of pages("/api/v1/albums/?page_size=500")) albums.push(...(data.results || data));
  } catch (error) {
    showError(error, "Could not list the albums");
    return null;
  }
  const select = el("select", {name: "album", id: "ask-album"},
    el("option", {value: ""}, "A new album…"),
    ...albums.map((a) => el("option", {value: a.id}, a.title)));
  const values = await ask("Add to album", [
    el("label", {for: "ask-album"}, "Album"), select,
    el("label", {for: "ask-title"}, "Title of a new album"),
    el("input", {type: "text", name: "title", id: "ask-title", maxlength: 200}),
  ], "Add");
  if (!values) return null;
  if (values.album) return values.album;
  if (!values.title.trim()) {
    showError(new Error("Choose an album or give the new one a title."));
    return null;
  }
  try {
    const album = await api("/api/v1/albums/", {method: "POST", body: {title: values.title.trim()}});
    return album.id;
  } catch (error) {
    showError(error, "Could not create the album");
    return null;
  }
}

export async function addToAlbum(ids) {
  const album = await chooseAlbum();
  if (!album) return false;
  try {
    for (let i = 0; i < ids.length; i += 1000) {
      await api(`/api/v1/albums/${album}/media/`, {method: "POST", body: {add: ids.slice(i, i + 1000)}});
    }
    notify(`${ids.length} added to the album`);
    return true;
  } catch (error) {
    showError(error, "Could not add to the album");
    return false;
  }
}

export async function tag(ids) {
  const values = await ask("Tag", [el("label", {for: "ask-tags"}, "Tags, separated by commas"),
    el("input", {type: "text", name: "tags", id: "ask-tags", required: true})], "Add tags");
  if (!values) return false;
  const names = values.tags.split(",").map((t) => t.trim()).filter(Boolean);
  try {
    await api("/api/v1/tags/bulk", {method: "POST", body: {media: ids, add: names, remove: []}});
    notify(`Tagged ${ids.length}`);
    return true;
  } catch (error) {
    showError(error, "Could not tag");
    return false;
  }
}

export class SelectionBar {
  constructor(selection, {onRemoved, onChanged, actions = ["album", "tag", "favourite", "vault", "trash"]}) {
    this.selection = selection;
    this.count = el("span", {class: "count", "aria-live": "polite"});
    const all = {
      album: button("Add to album", () => this.run(addToAlbum)),
      tag: button("Tag", () => this.run(tag)),
      favourite: button("Favourite", () => this.run(async (ids) => {
        const done = await each(ids, (id) => api(`/api/v1/media/${id}/favourite`, {method: "POST"}));
        return {changed: done, favourite: true};
      })),
      vault: button("Move to vault", () => this.run(async (ids) => {
        const done = await each(ids, (id) => api(`/api/v1/media/${id}/move-to-vault`, {method: "POST"}));
        if (done.length) notify(`${done.length} moved to the vault`);
        return {removed: done};
      })),
      trash: button("Move to trash", () => this.run(async (ids) => {
        const done = await each(ids, (id) => api(`/api/v1/media/${id}/`, {method: "DELETE"}));
        if (done.length) notify(`${done.length} moved to the trash`);
        return {removed: done};
      })),
    };
    this.root = el("div", {class: "selection-bar", role: "toolbar", "aria-label": "Selection", hidden: true},
      this.count, ...actions.map((a) => all[a]), button("Clear selection", () => selection.clear()));
    this.onRemoved = onRemoved;
    this.onChanged = onChanged;
    document.body.append(this.root);
  }

  update() {
    const n = this.selection.size;
    this.root.hidden = n === 0;
    this.count.textContent = `${n} selected`;
  }

  async run(action) {
    const ids = this.selection.list();
    const result = await action(ids);
    if (result && result.removed) {
      this.onRemoved(result.removed);
      this.selection.clear();
    } else if (result) {
      this.onChanged(result.changed || ids, result);
    }
  }
}
