// The timeline page: every item, newest first, grouped by day under month headers (the local
// time of capture), in a windowed justified grid; a year/month scrubber; selection; the
// lightbox; live updates from the events websocket.
import {api, ApiError, el, monthLabel, showError} from "./api.js";
import {Selection, VirtualGrid} from "./grid.js";
import {Lightbox} from "./lightbox.js";
import {SelectionBar} from "./selection.js";
import {Scrubber} from "./scrubber.js";

const PAGE = 500;
const FIRST_PAGE = 80;
const root = document.getElementById("timeline");
const counter = document.getElementById("count");
let total = 0;

const selection = new Selection(() => {
  grid.repaint();
  bar.update();
});
const grid = new VirtualGrid(root, {groupByDay: true, selection, onOpen: (id) => lightbox.open(id)});
const lightbox = new Lightbox({
  items: () => grid.items(),
  onRemoved: (id) => removeIds([id]),
  onChanged: (media) => grid.redraw([media.id]),
});
const bar = new SelectionBar(selection, {
  onRemoved: removeIds,
  onChanged: (ids, result) => {
    if (result && result.favourite) for (const id of ids) { const f = grid.find(id); if (f) f.media.favourite = true; }
    grid.redraw(ids);
  },
});
const scrubber = new Scrubber(document.getElementById("scrubber"), grid);
const relayout = grid.relayout.bind(grid);
grid.relayout = () => {
  relayout();
  scrubber.update();
};

function setCount(n) {
  total = Math.max(0, n);
  counter.dataset.count = String(total);
  counter.textContent = `${total} item${total === 1 ? "" : "s"}`;
  const empty = document.getElementById("empty");
  empty.hidden = total > 0;
}

function removeIds(ids) {
  let removed = 0;
  for (const id of ids) if (grid.remove(id)) removed++;
  setCount(total - removed);
  grid.relayout();
}

async function allOf(url) {
  const items = [];
  let next = url;
  while (next) {
    const data = await api(next);
    items.push(...data.results);
    next = data.next;
  }
  return items;
}

// Month buckets when the server has them: every month is known (and placed) at once and loads
// its items when it comes near. Otherwise pages of the whole list, loaded as the user scrolls.
async function start() {
  try {
    const data = await api("/api/v1/timeline/buckets/?size=month");
    const sections = data.buckets.map((b) => ({
      key: b.bucket, label: monthLabel(b.bucket), count: b.count, items: null,
      load: () => allOf(`/api/v1/media/?bucket=${encodeURIComponent(b.bucket)}&page_size=${PAGE}`),
    }));
    setCount(sections.reduce((n, s) => n + s.count, 0));
    grid.setSections(sections);
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 404 || error.status === 405))) {
      showError(error, "Could not load the timeline");
      return;
    }
    await streamStart();
  }
  root.setAttribute("aria-busy", "false");
}

let nextUrl = null;
function tail(remaining) {
  return {key: "more", count: remaining, items: null, load: loadMore};
}

function merge(items) {
  const sections = grid.sections.filter((s) => s.key !== "more");
  for (const media of items) {
    const key = (media.taken_at || "").slice(0, 7);
    let section = sections[sections.length - 1];
    if (!section || section.key !== key) {
      section = {key, label: monthLabel(key), count: 0, items: []};
      sections.push(section);
    }
    section.items.push(media);
    section.count++;
  }
  const loaded = sections.reduce((n, s) => n + s.items.length, 0);
  if (nextUrl && total > loaded) sections.push(tail(total - loaded));
  grid.sections = sections;
}

async function loadMore() {
  const url = new URL(nextUrl, location.href);
  url.searchParams.set("page_size", String(PAGE));
  const data = await api(url.pathname + url.search);
  nextUrl = data.next;
  merge(data.results);
  return null; // the sections were rebuilt
}

async function streamStart() {
  // A first page of one screen or two, so thumbnails start at once; then larger pages.
  const data = await api(`/api/v1/media/?page_size=${FIRST_PAGE}`);
  nextUrl = data.next;
  setCount(data.count);
  grid.sections = [];
  merge(data.results);
  grid.relayout();
}

// --- live updates -----------------------------------------------------------------------------
const pending = new Map();
let flush = null;

// A new or changed media goes where its capture time puts it: processing may have moved it to
// another day or month (the upload time until its EXIF date is known).
function upsert(media) {
  const found = grid.find(media.id);
  if (found) {
    found.section.items.splice(found.index, 1);
    found.section.count--;
    found.section.version = (found.section.version || 0) + 1;
  }
  const key = (media.taken_at || "").slice(0, 7);
  let index = grid.sections.findIndex((s) => s.key !== "more" && s.key <= key);
  let section = grid.sections[index];
  if (!section || section.key !== key) {
    section = {key, label: monthLabel(key), count: 0, items: []};
    if (index < 0) index = grid.sections.findIndex((s) => s.key === "more");
    grid.sections.splice(index < 0 ? grid.sections.length : index, 0, section);
  }
  section.count++;
  if (!found) setCount(total + 1);
  if (!section.items) return; // counted; its items load when it comes near
  const at = section.items.findIndex((m) => m.taken_at < media.taken_at || (m.taken_at === media.taken_at && m.id < media.id));
  section.items.splice(at < 0 ? section.items.length : at, 0, media);
  section.version = (section.version || 0) + 1;
}

document.addEventListener("chipmunk:event", (event) => {
  const data = event.detail;
  if (!data.media_id) return;
  if (data.event === "media.deleted" || data.event === "media.trashed" || data.event === "media.moved_to_vault") {
    removeIds([data.media_id]);
    return;
  }
  pending.set(data.media_id, data.event);
  if (flush) return;
  flush = setTimeout(async () => {
    const ids = [...pending.keys()];
    pending.clear();
    flush = null;
    for (const id of ids) {
      try {
        upsert(await api(`/api/v1/media/${id}/`));
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) grid.remove(id);
        else showError(error, "Could not refresh an item");
      }
    }
    grid.relayout();
  }, 150);
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && selection.size && document.body.classList.contains("has-lightbox") === false) selection.clear();
});

start().catch((error) => showError(error, "Could not load the timeline"));
