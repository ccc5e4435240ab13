// Search results: the query and filters live in the page's URL (so results can be linked and
// the back button works); facet chips with counts narrow the search, active filters can be
// removed one by one.
import {api, el, monthLabel, showError} from "./api.js";
import {byMonth, VirtualGrid} from "./grid.js";
import {Lightbox} from "./lightbox.js";

const FACETS = ["kind", "year", "month", "country", "city", "camera", "tag", "album"];
const FILTERS = [...FACETS, "favourite", "day", "from", "to", "near"];
const NAMES = {kind: "Kind", year: "Year", month: "Month", country: "Country", city: "City", camera: "Camera", tag: "Tag",
  album: "Album", favourite: "Favourite", day: "Day", from: "From", to: "To", near: "Near"};
const MONTHS = ["", "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
  "November", "December"];

const params = new URLSearchParams(location.search);
const root = document.getElementById("results");
const grid = new VirtualGrid(root, {groupByDay: true, onOpen: (id) => lightbox.open(id)});
const lightbox = new Lightbox({items: () => grid.items(), onRemoved: (id) => { grid.remove(id); grid.relayout(); }});
let next = null;
let items = [];
let loading = false;

function valueLabel(name, value) {
  if (name === "month") return MONTHS[Number(value)] || value;
  return value;
}

function link(changes) {
  const p = new URLSearchParams(location.search);
  for (const [name, value, on] of changes) {
    if (on) p.append(name, value);
    else {
      const kept = p.getAll(name).filter((v) => v !== value);
      p.delete(name);
      for (const v of kept) p.append(name, v);
    }
  }
  return `?${p}`;
}

function showFilters() {
  const chips = [];
  for (const name of FILTERS) {
    for (const value of params.getAll(name)) {
      chips.push(el("a", {class: "chip active", href: link([[name, value, false]]),
        "aria-label": `Remove the filter ${NAMES[name]}: ${valueLabel(name, value)}`}, `${NAMES[name]}: ${valueLabel(name, value)} ×`));
    }
  }
  document.getElementById("filters").replaceChildren(...chips);
}

function showFacets(facets) {
  const box = document.getElementById("facets");
  const groups = [];
  for (const name of FACETS) {
    const counts = facets && facets[name];
    if (!counts) continue;
    const active = new Set(params.getAll(name));
    const entries = Object.entries(counts).filter(([value]) => !active.has(value)).sort((a, b) => b[1] - a[1]).slice(0, 12);
    if (!entries.length) continue;
    groups.push(el("div", {class: "facet", role: "group", "aria-label": NAMES[name]},
      el("span", {class: "facet-name"}, NAMES[name]),
      ...entries.map(([value, count]) => el("a", {class: "chip", href: link([[name, value, true]]),
        "aria-label": `${NAMES[name]} ${valueLabel(name, value)}, ${count} results`}, `${valueLabel(name, value)} `,
        el("span", {class: "n", "aria-hidden": "true"}, String(count))))));
  }
  box.replaceChildren(...groups);
}

async function more() {
  if (!next || loading) return;
  loading = true;
  try {
    const data = await api(next);
    next = data.next;
    items.push(...data.results);
    grid.setSections(byMonth(items, monthLabel));
  } catch (error) {
    showError(error, "Could not load more results");
    next = null;
  } finally {
    loading = false;
  }
}
grid.onNeedMore = more;

async function start() {
  showFilters();
  const query = new URLSearchParams(params);
  if (![...query.keys()].length) {
    document.getElementById("count").textContent = "Type what you are looking for: a place, a month, a camera, a tag.";
    return;
  }
  query.set("facets", FACETS.join(","));
  query.set("page_size", "200");
  try {
    const data = await api(`/api/v1/search/?${query}`);
    document.getElementById("count").textContent = `${data.count} result${data.count === 1 ? "" : "s"}`;
    document.getElementById("empty").hidden = data.count > 0;
    showFacets(data.facets);
    items = data.results;
    next = data.next;
    grid.setSections(byMonth(items, monthLabel));
  } catch (error) {
    document.getElementById("count").textContent = "The search could not be done.";
    showError(error, "Search failed");
  }
}

start();
