// Leaflet (vendored under static/vendor/) is loaded on demand: the map page and the
// lightbox's small map. Tiles come from MAP_TILE_URL (the page's data-tile-url); when they
// cannot be reached the markers still work on a blank background.
let loading = null;

function script(src) {
  return new Promise((resolve, reject) => {
    const node = document.createElement("script");
    node.src = src;
    node.onload = resolve;
    node.onerror = () => reject(new Error(`${src} could not be loaded`));
    document.head.append(node);
  });
}

function stylesheet(href) {
  if (document.querySelector(`link[href="${href}"]`)) return;
  const node = document.createElement("link");
  node.rel = "stylesheet";
  node.href = href;
  document.head.append(node);
}

export function loadLeaflet({cluster = false} = {}) {
  const base = document.body.dataset.static || "/static/";
  stylesheet(`${base}vendor/leaflet-1.9.4/leaflet.css`);
  if (!loading) loading = window.L ? Promise.resolve() : script(`${base}vendor/leaflet-1.9.4/leaflet.js`);
  let ready = loading;
  if (cluster) {
    stylesheet(`${base}vendor/leaflet.markercluster-1.5.3/MarkerCluster.css`);
    stylesheet(`${base}vendor/leaflet.markercluster-1.5.3/MarkerCluster.Default.css`);
    ready = loading.then(() => (window.L.markerClusterGroup ? null : script(`${base}vendor/leaflet.markercluster-1.5.3/leaflet.markercluster.js`)));
  }
  return ready.then(() => window.L);
}

export function tileLayer(L) {
  const url = document.body.dataset.tileUrl || "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
  return L.tileLayer(url, {maxZoom: 19, attribution: "© OpenStreetMap contributors"});
}
