// The trash: what was deleted, newest deletion first; restore a selection, or empty it.
import {api, button, el, notify, showError} from "./api.js";
import {mediaPage, Selection} from "./grid.js";
import {Lightbox} from "./lightbox.js";
import {ask} from "./selection.js";

const root = document.getElementById("trash-grid");
let page = null;
const selection = new Selection(() => {
  if (page) page.grid.repaint();
  bar.hidden = selection.size === 0;
  count.textContent = `${selection.size} selected`;
});
const count = el("span", {class: "count", "aria-live": "polite"});
const bar = el("div", {class: "selection-bar", role: "toolbar", "aria-label": "Selection", hidden: true}, count,
  button("Restore", async () => {
    const ids = selection.list();
    try {
      await api("/api/v1/trash/restore", {method: "POST", body: {media: ids}});
    } catch (error) {
      showError(error, "Could not restore them");
      return;
    }
    notify(`${ids.length} restored`);
    for (const id of ids) page.grid.remove(id);
    selection.clear();
    page.grid.relayout();
  }),
  button("Clear selection", () => selection.clear()));
document.body.append(bar);

function setCount(n) {
  document.getElementById("count").textContent = `${n} item${n === 1 ? "" : "s"} in the trash`;
  document.getElementById("empty").hidden = n > 0;
}

document.getElementById("trash-empty").addEventListener("click", async () => {
  const values = await ask("Empty the trash? Everything in it is deleted for good.", [], "Empty trash");
  if (!values) return;
  try {
    await api("/api/v1/trash/empty", {method: "POST"});
  } catch (error) {
    showError(error, "Could not empty the trash");
    return;
  }
  notify("The trash is empty");
  if (page) page.grid.setSections([]);
  setCount(0);
});

mediaPage(root, "/api/v1/trash/?page_size=500", {
  selection,
  Lightbox,
  lightboxOptions: {},
  onCount: setCount,
}).then((p) => { page = p; }).catch((error) => {
  showError(error, "Could not load the trash");
  document.getElementById("count").textContent = "The trash could not be loaded.";
});
