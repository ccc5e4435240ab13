// The search page (templates/search/results.html, rendered by the search app) with JavaScript:
// the server's facet chips stay as they are (links that narrow or widen the search); the
// results become the windowed grid with the lightbox, read from /api/v1/search/ with the
// page's own query, and more load as the page scrolls.
import {api, monthLabel, showError} from "./api.js";
import {byMonth, VirtualGrid} from "./grid.js";
import {Lightbox} from "./lightbox.js";

const serverGrid = document.getElementById("grid");
const root = document.getElementById("results");

if (root && serverGrid) {
  const grid = new VirtualGrid(root, {groupByDay: true, onOpen: (id) => lightbox.open(id)});
  const lightbox = new Lightbox({items: () => grid.items(), onRemoved: (id) => { grid.remove(id); grid.relayout(); },
    onChanged: (media) => grid.redraw([media.id])});
  const query = new URLSearchParams(location.search);
  query.delete("cursor");
  query.set("page_size", "200");
  let next = `/api/v1/search/?${query}`;
  let items = [];
  let loading = false;

  async function more() {
    if (!next || loading) return;
    loading = true;
    try {
      const data = await api(next);
      next = data.next;
      items = items.concat(data.results);
      if (serverGrid.isConnected) {
        serverGrid.hidden = true;
        const pages = document.querySelector(".search nav.pages");
        if (pages) pages.hidden = true;
      }
      grid.setSections(byMonth(items, monthLabel));
    } catch (error) {
      next = null;
      showError(error, "Could not load the results");
    } finally {
      loading = false;
    }
  }
  grid.onNeedMore = more;
  more();
}
