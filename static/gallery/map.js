// The map: every geotagged media as a marker, clustered (leaflet.markercluster). A marker
// opens its media in the lightbox; a cluster opens a panel with its media. Tiles come from
// MAP_TILE_URL; without them the markers still show and work on a plain background.
import {api, el, monthLabel, showError} from "./api.js";
import {byMonth, VirtualGrid} from "./grid.js";
import {Lightbox} from "./lightbox.js";
import {loadLeaflet, tileLayer} from "./maps.js";
import {placeholderUrl, labelOf} from "./media.js";

const counter = document.getElementById("count");
const panel = document.getElementById("map-panel");
const panelGrid = new VirtualGrid(document.getElementById("map-grid"), {groupByDay: true, onOpen: (id) => lightbox.open(id)});
let current = [];
const lightbox = new Lightbox({items: () => (panel.hidden ? current : panelGrid.items())});

document.getElementById("map-panel-close").addEventListener("click", () => { panel.hidden = true; });

function openPanel(items, label) {
  items.sort((a, b) => (a.taken_at < b.taken_at ? 1 : -1));
  panel.hidden = false;
  document.getElementById("map-panel-title").textContent = label;
  panelGrid.setSections(byMonth(items, monthLabel));
  panel.querySelector("button").focus();
}

async function start() {
  let L;
  try {
    L = await loadLeaflet({cluster: true});
  } catch (error) {
    showError(error, "The map could not be loaded");
    return;
  }
  const map = L.map("map", {worldCopyJump: true}).setView([20, 0], 2);
  const tiles = tileLayer(L).addTo(map);
  tiles.on("tileerror", () => document.getElementById("map").classList.add("no-tiles"));
  const cluster = L.markerClusterGroup({zoomToBoundsOnClick: false, showCoverageOnHover: false});
  cluster.on("clusterclick", (event) => {
    const items = event.layer.getAllChildMarkers().map((m) => m.options.media);
    openPanel(items, `${items.length} items here`);
  });
  map.addLayer(cluster);
  const bounds = [];
  let count = 0;
  let next = "/api/v1/media/?page_size=500";
  while (next) {
    let data;
    try {
      data = await api(next);
    } catch (error) {
      showError(error, "Could not load your media");
      return;
    }
    next = data.next;
    const markers = [];
    for (const media of data.results) {
      if (media.latitude === null || media.longitude === null || media.latitude === undefined) continue;
      const thumb = placeholderUrl(media);
      const icon = L.divIcon({className: "photo-marker", html: "", iconSize: [36, 36]});
      const marker = L.marker([media.latitude, media.longitude], {media, icon, title: labelOf(media), alt: labelOf(media), keyboard: true});
      marker.on("add", () => {
        const node = marker.getElement();
        if (node && thumb && !node.firstChild) node.append(el("img", {src: (media.variants["2s"] || media.variants["2"] || {url: thumb}).url, alt: ""}));
      });
      marker.on("click", () => {
        current = [media];
        panel.hidden = true;
        lightbox.open(media.id);
      });
      markers.push(marker);
      bounds.push([media.latitude, media.longitude]);
    }
    cluster.addLayers(markers);
    count += markers.length;
    counter.textContent = `${count} geotagged item${count === 1 ? "" : "s"}${next ? "…" : ""}`;
  }
  if (bounds.length) map.fitBounds(bounds, {padding: [30, 30], maxZoom: 14});
  else counter.textContent = "None of your media has a place yet.";
}

start().catch((error) => showError(error, "The map failed"));
