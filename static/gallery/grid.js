// A windowed, justified grid: sections (months of the timeline, or one section for an album,
// search results, the trash...) are laid out in rows that keep each item's aspect ratio
// (squares on narrow screens), and only the rows near the viewport exist in the DOM. A
// section may be a count without its items yet: it holds an estimated height until it comes
// near the viewport and its load() fills it.
import {el, dayLabel, monthLabel, showError} from "./api.js";
import {aspectOf, labelOf, pickVariant, placeholderUrl, ICONS} from "./media.js";

const GAP = 4;
const MONTH_H = 56;
const DAY_H = 40;
const OVERSCAN = 800; // px above and below the viewport kept rendered

export class VirtualGrid {
  constructor(container, {groupByDay = true, onOpen = () => {}, selection = null, onNeedMore = null} = {}) {
    this.container = container;
    this.groupByDay = groupByDay;
    this.onOpen = onOpen;
    this.selection = selection;
    this.onNeedMore = onNeedMore;
    this.sections = [];
    this.blocks = [];
    this.nodes = new Map();
    this.height = 0;
    this.width = 0;
    this.scheduled = false;
    this.container.classList.add("vgrid");
    this.observer = new IntersectionObserver((entries) => this.intersect(entries), {rootMargin: "400px 0px"});
    this.container.addEventListener("click", (event) => this.click(event));
    this.container.addEventListener("keydown", (event) => this.key(event));
    // While the page scrolls fast (a scrubber drag, a flick) tiles are placed without their
    // pictures, which would be off screen before they decode; the pictures come when it slows.
    this.fast = false;
    this.lastScroll = {y: window.scrollY, t: performance.now()};
    this.idleTimer = null;
    window.addEventListener("scroll", () => this.scrolled(), {passive: true});
    new ResizeObserver(() => {
      const width = this.container.clientWidth;
      if (width && width !== this.width) this.relayout();
    }).observe(this.container);
  }

  // sections: [{key, label?, count, items: [media]|null, load?: async () => [media]}]
  setSections(sections) {
    this.sections = sections;
    this.relayout();
  }

  items() {
    const out = [];
    for (const section of this.sections) if (section.items) out.push(...section.items);
    return out;
  }

  find(id) {
    for (const section of this.sections) {
      if (!section.items) continue;
      const index = section.items.findIndex((m) => m.id === id);
      if (index >= 0) return {section, index, media: section.items[index]};
    }
    return null;
  }

  // --- layout -------------------------------------------------------------------------------
  rowTarget() {
    if (this.width < 600) return null; // squares
    if (this.width > 2400) return 280;
    return this.width > 1200 ? 220 : 180;
  }

  layoutItems(items, top) {
    const rows = [];
    const width = this.width;
    const target = this.rowTarget();
    if (!target) {
      const columns = Math.max(3, Math.floor(width / 120));
      const side = (width - GAP * (columns - 1)) / columns;
      for (let i = 0; i < items.length; i += columns) {
        const tiles = items.slice(i, i + columns).map((media, j) => ({media, x: j * (side + GAP), w: side}));
        rows.push({type: "row", top, h: side, tiles, square: true});
        top += side + GAP;
      }
      return {rows, top};
    }
    let start = 0;
    while (start < items.length) {
      let sum = 0;
      let end = start;
      while (end < items.length) {
        sum += aspectOf(items[end]);
        end++;
        if (sum * target + GAP * (end - start - 1) >= width) break;
      }
      const count = end - start;
      const full = sum * target + GAP * (count - 1) >= width;
      const h = full ? (width - GAP * (count - 1)) / sum : target;
      let x = 0;
      const tiles = [];
      for (let i = start; i < end; i++) {
        const w = aspectOf(items[i]) * h;
        tiles.push({media: items[i], x, w});
        x += w + GAP;
      }
      rows.push({type: "row", top, h, tiles, square: false});
      top += h + GAP;
      start = end;
    }
    return {rows, top};
  }

  estimate(count) {
    const target = this.rowTarget();
    if (!target) {
      const columns = Math.max(3, Math.floor(this.width / 120));
      return Math.ceil(count / columns) * ((this.width / columns) + GAP);
    }
    const perRow = Math.max(1, this.width / (target * 1.3));
    return Math.ceil(count / perRow) * (target + GAP);
  }

  layoutSection(section) {
    const blocks = [];
    let top = 0;
    const items = section.items;
    if (!this.groupByDay) {
      const laid = this.layoutItems(items, 0);
      return {blocks: laid.rows, height: laid.top};
    }
    let i = 0;
    while (i < items.length) {
      const day = (items[i].taken_at || "").slice(0, 10);
      let j = i;
      while (j < items.length && (items[j].taken_at || "").slice(0, 10) === day) j++;
      blocks.push({type: "day", key: `d:${section.key}:${day}`, top, h: DAY_H, day, ids: items.slice(i, j).map((m) => m.id)});
      top += DAY_H;
      const laid = this.layoutItems(items.slice(i, j), top);
      blocks.push(...laid.rows);
      top = laid.top;
      i = j;
    }
    return {blocks, height: top};
  }

  relayout() {
    this.width = this.container.clientWidth || document.documentElement.clientWidth;
    const anchor = this.anchor();
    const blocks = [];
    let top = 0;
    for (const section of this.sections) {
      section.top = top;
      section.height = 0;
      if (section.items ? section.items.length === 0 : section.count === 0) continue; // emptied by a move or delete
      if (section.label) {
        blocks.push({type: "month", key: `m:${section.key}`, top, h: MONTH_H, section});
        top += MONTH_H;
      }
      if (!section.items) {
        blocks.push({type: "pending", key: `p:${section.key}`, top, h: this.estimate(section.count), section});
        top += this.estimate(section.count);
      } else {
        // A section's own layout is kept until its items or the width change: a relayout after
        // one month loaded only moves the others.
        const cache = section._layout;
        const stamp = `${this.width}|${section.items.length}|${section.version || 0}`;
        if (!cache || cache.stamp !== stamp || cache.items !== section.items) {
          section._layout = {stamp, items: section.items, ...this.layoutSection(section)};
        }
        for (const block of section._layout.blocks) blocks.push({...block, top: top + block.top});
        top += section._layout.height;
      }
      section.height = top - section.top;
    }
    this.blocks = blocks;
    this.height = top;
    this.container.style.height = `${Math.ceil(top)}px`;
    for (const [, node] of this.nodes) node._stale = true;
    this.restore(anchor);
    this.render();
  }

  // The item at the top of the viewport, and where it was, so a relayout keeps it in place.
  anchor() {
    const scrollTop = window.scrollY - this.offsetTop();
    if (scrollTop <= 0 || !this.blocks.length) return null;
    const block = this.blocks[this.indexAt(scrollTop)];
    if (!block) return null;
    const key = block.type === "row" ? block.tiles[0].media.id : block.key;
    return {key, delta: scrollTop - block.top};
  }

  restore(anchor) {
    if (!anchor) return;
    for (const block of this.blocks) {
      const key = block.type === "row" ? block.tiles[0].media.id : block.key;
      if (key === anchor.key || (block.type === "row" && block.tiles.some((t) => t.media.id === anchor.key))) {
        const target = this.offsetTop() + block.top + anchor.delta;
        if (Math.abs(target - window.scrollY) > 1) window.scrollTo(0, target);
        return;
      }
    }
  }

  offsetTop() {
    return this.container.getBoundingClientRect().top + window.scrollY;
  }

  indexAt(y) {
    let lo = 0;
    let hi = this.blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.blocks[mid].top <= y) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  // --- rendering ----------------------------------------------------------------------------
  scrolled() {
    const now = performance.now();
    const speed = Math.abs(window.scrollY - this.lastScroll.y) / Math.max(1, now - this.lastScroll.t); // px/ms
    this.lastScroll = {y: window.scrollY, t: now};
    if (speed > 4 && !this.fast) this.fast = true; // > 4,000 px/s: several screens a second
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.fast = false;
      for (const [, node] of this.nodes) if (node._media && node._wanted) this.loadPictures(node);
    }, 120);
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  render() {
    const top = window.scrollY - this.offsetTop() - OVERSCAN;
    const bottom = window.scrollY - this.offsetTop() + window.innerHeight + OVERSCAN;
    const keep = new Set();
    if (this.blocks.length) {
      for (let i = this.indexAt(Math.max(0, top)); i < this.blocks.length && this.blocks[i].top < bottom; i++) {
        const block = this.blocks[i];
        if (block.top + block.h < top) continue;
        if (block.type === "row") {
          for (const tile of block.tiles) {
            keep.add(tile.media.id);
            this.placeTile(tile, block);
          }
        } else {
          keep.add(block.key);
          this.placeBlock(block);
          if (block.type === "pending") this.loadSection(block.section);
        }
      }
    }
    for (const [key, node] of this.nodes) {
      if (!keep.has(key) && !(node.contains(document.activeElement) && !node._stale)) {
        this.observer.unobserve(node);
        node.remove();
        this.nodes.delete(key);
      }
    }
    if (this.onNeedMore && bottom > this.height - OVERSCAN) this.onNeedMore();
  }

  async loadSection(section) {
    if (section.loading || section.items || section.failed) return;
    section.loading = true;
    try {
      const items = await section.load();
      if (items) section.items = items;
    } catch (error) {
      section.loading = false;
      section.failed = true;
      showError(error, `Could not load ${section.label || "these items"}`);
      return;
    }
    section.loading = false;
    this.relayout();
  }

  placeBlock(block) {
    let node = this.nodes.get(block.key);
    if (!node) {
      if (block.type === "month") {
        node = el("h2", {class: "vg-month"}, monthLabel(block.section.key.slice(0, 7)));
        if (block.section.label && block.section.label !== block.section.key) node.textContent = block.section.label;
      } else if (block.type === "day") {
        node = el("div", {class: "vg-day"}, el("h3", {}, dayLabel(block.day)));
        if (this.selection) {
          node.append(el("button", {type: "button", class: "select-day", "aria-label": `Select all of ${dayLabel(block.day)}`,
            dataset: {day: block.key}}, "Select day"));
        }
      } else {
        node = el("div", {class: "vg-pending", "aria-busy": "true"}, "Loading…");
      }
      this.container.append(node);
      this.nodes.set(block.key, node);
    }
    node._stale = false;
    node._block = block;
    if (node._y !== block.top) {
      node._y = block.top;
      node.style.transform = `translateY(${block.top}px)`;
    }
    if (block.type === "pending") node.style.height = `${block.h}px`;
  }

  placeTile(tile, row) {
    const media = tile.media;
    let node = this.nodes.get(media.id);
    if (!node || node._media !== media) {
      if (node) {
        this.observer.unobserve(node);
        node.remove();
      }
      node = this.makeTile(media);
      this.container.append(node);
      this.nodes.set(media.id, node);
    }
    node._stale = false;
    const w = Math.round(tile.w * 100) / 100;
    const h = Math.round(row.h * 100) / 100;
    if (node._w !== w || node._h !== h || node._square !== row.square) {
      node._w = w;
      node._h = h;
      node._square = row.square;
      node.style.width = `${w}px`;
      node.style.height = `${h}px`;
      if (node._loaded) this.loadFull(node);
    }
    if (node._x !== tile.x || node._y !== row.top) {
      node._x = tile.x;
      node._y = row.top;
      node.style.transform = `translate(${tile.x}px, ${row.top}px)`;
    }
    this.paintSelection(node);
  }

  makeTile(media) {
    const node = el("button", {type: "button", class: `tile ${media.kind} ${media.status || ""}`,
      "aria-label": labelOf(media), dataset: {id: media.id}});
    node._media = media;
    if (!placeholderUrl(media)) {
      node.append(el("span", {class: "icon", "aria-hidden": "true"}, media.status === "ready" ? (ICONS[media.kind] || "") : media.status));
    }
    if (media.kind === "video" && media.duration) {
      const s = Math.round(media.duration);
      node.append(el("span", {class: "badge", "aria-hidden": "true"}, `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`));
    }
    if (media.favourite) node.append(el("span", {class: "fav", "aria-hidden": "true"}, "♥"));
    this.observer.observe(node);
    return node;
  }

  intersect(entries) {
    for (const entry of entries) {
      const node = entry.target;
      node._wanted = entry.isIntersecting;
      if (entry.isIntersecting && !this.fast) this.loadPictures(node);
    }
  }

  // Level 1 (10 px, blurred by the stylesheet) at once, then the level that fits the tile.
  loadPictures(node) {
    if (!node.isConnected) return;
    if (!node._ph) {
      node._ph = true;
      const ph = placeholderUrl(node._media);
      if (ph) node.prepend(el("img", {class: "ph", src: ph, alt: "", decoding: "async"}));
    }
    if (!node._loaded) this.loadFull(node);
  }

  loadFull(node) {
    const media = node._media;
    const variant = pickVariant(media, node._w || 200, node._h || 200, {square: node._square});
    if (!variant) return;
    node._loaded = true;
    let img = node.querySelector("img.full");
    if (!img) {
      img = el("img", {class: "full", alt: "", decoding: "async"});
      img.addEventListener("load", () => node.classList.add("loaded"), {once: true});
      node.append(img);
    }
    if (img.getAttribute("src") !== variant.url) img.src = variant.url;
  }

  paintSelection(node) {
    if (!this.selection) return;
    const selected = this.selection.has(node.dataset.id);
    if (node.classList.contains("selected") !== selected) {
      node.classList.toggle("selected", selected);
      node.setAttribute("aria-label", labelOf(node._media) + (selected ? ", selected" : ""));
    }
  }

  // Tiles of these ids are made again at the next render (a changed favourite, a new status).
  redraw(ids) {
    for (const id of ids) {
      const node = this.nodes.get(id);
      if (node) node._media = null;
    }
    this.render();
  }

  repaint() {
    for (const [, node] of this.nodes) if (node._media) this.paintSelection(node);
  }

  // --- input --------------------------------------------------------------------------------
  click(event) {
    const day = event.target.closest(".select-day");
    if (day && this.selection) {
      const block = day.parentElement._block;
      this.selection.toggleAll(block.ids);
      return;
    }
    const tile = event.target.closest(".tile");
    if (!tile) return;
    const id = tile.dataset.id;
    if (this.selection && (event.shiftKey || event.ctrlKey || event.metaKey || this.selection.size)) {
      if (event.shiftKey) this.selection.range(id, this.items().map((m) => m.id));
      else this.selection.toggle(id);
      return;
    }
    this.onOpen(id);
  }

  key(event) {
    const tile = event.target.closest(".tile");
    if (!tile) return;
    if ((event.key === "x" || event.key === "X") && this.selection) {
      event.preventDefault();
      this.selection.toggle(tile.dataset.id);
      return;
    }
    const moves = {ArrowRight: 1, ArrowLeft: -1};
    if (moves[event.key]) {
      event.preventDefault();
      const ids = this.items().map((m) => m.id);
      const next = ids[ids.indexOf(tile.dataset.id) + moves[event.key]];
      if (next) this.focus(next);
    }
  }

  focus(id) {
    this.scrollTo(id);
    requestAnimationFrame(() => {
      const node = this.nodes.get(id);
      if (node) node.focus({preventScroll: true});
    });
  }

  scrollTo(id) {
    for (const block of this.blocks) {
      if (block.type === "row" && block.tiles.some((t) => t.media.id === id)) {
        const y = this.offsetTop() + block.top;
        if (y < window.scrollY + 60 || y + block.h > window.scrollY + window.innerHeight) {
          window.scrollTo(0, y - window.innerHeight / 3);
        }
        this.render();
        return;
      }
    }
  }

  scrollToSection(key) {
    const section = this.sections.find((s) => s.key === key);
    if (section) window.scrollTo(0, this.offsetTop() + section.top - 8);
  }

  remove(id) {
    const found = this.find(id);
    if (!found) return null;
    found.section.items.splice(found.index, 1);
    found.section.count = Math.max(0, found.section.count - 1);
    found.section.version = (found.section.version || 0) + 1;
    return found;
  }
}

// The selected ids, with Shift-click ranges over the grid's order.
export class Selection {
  constructor(onChange) {
    this.ids = new Set();
    this.last = null;
    this.onChange = onChange;
  }

  get size() {
    return this.ids.size;
  }

  has(id) {
    return this.ids.has(id);
  }

  toggle(id) {
    if (this.ids.has(id)) this.ids.delete(id);
    else this.ids.add(id);
    this.last = id;
    this.onChange();
  }

  toggleAll(ids) {
    const all = ids.every((id) => this.ids.has(id));
    for (const id of ids) {
      if (all) this.ids.delete(id);
      else this.ids.add(id);
    }
    this.onChange();
  }

  range(id, order) {
    const from = this.last ? order.indexOf(this.last) : -1;
    const to = order.indexOf(id);
    if (from < 0 || to < 0) return this.toggle(id);
    const [a, b] = from < to ? [from, to] : [to, from];
    for (let i = a; i <= b; i++) this.ids.add(order[i]);
    this.last = id;
    this.onChange();
  }

  clear() {
    this.ids.clear();
    this.last = null;
    this.onChange();
  }

  list() {
    return [...this.ids];
  }
}

// Month sections of a list already in timeline order (newest first).
export function byMonth(items, monthLabel) {
  const sections = [];
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
  return sections;
}

// A page showing a list of media from the API (an album, search results, the trash, the
// vault): the grid with month and day headers, a lightbox, and optionally a selection bar.
// `reload(url)` fills the same grid again (the vault after an upload, say).
export async function mediaPage(root, url, {lightboxOptions = {}, selection = null, onCount = () => {}, Lightbox}) {
  const {api, monthLabel} = await import("./api.js");
  const grid = new VirtualGrid(root, {groupByDay: true, selection, onOpen: (id) => lightbox.open(id)});
  const lightbox = new Lightbox({items: () => grid.items(), onRemoved: (id) => { grid.remove(id); grid.relayout(); },
    onChanged: (media) => grid.redraw([media.id]), ...lightboxOptions});
  async function reload(from) {
    const items = [];
    let next = from;
    grid.setSections([]);
    while (next) {
      const data = await api(next);
      items.push(...data.results);
      onCount(data.count ?? items.length, data);
      grid.setSections(byMonth(items, monthLabel));
      next = data.next;
    }
  }
  await reload(url);
  return {grid, lightbox, reload};
}
