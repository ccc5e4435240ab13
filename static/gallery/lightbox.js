// The lightbox: one media at a time in a modal dialog. ← → and swipes step through the list
// it was opened from, Esc closes, zoom goes to level 6 then the original; videos and music
// play in the browser's own elements (they seek with Range requests on /m/), documents
// offer a download. The info panel is the server's fragment (/info/<id>/) plus the
// description, tags and albums from the media JSON.
import {api, button, el, human, notify, pages, showError, whenLabel} from "./api.js";
import {ICONS, pickVariant} from "./media.js";
import {loadLeaflet, tileLayer} from "./maps.js";

export class Lightbox {
  constructor({items, onRemoved = () => {}, onChanged = () => {}}) {
    this.items = items; // () => [media] in display order
    this.onRemoved = onRemoved;
    this.onChanged = onChanged;
    this.index = -1;
    this.zoom = 0;
    this.build();
  }

  build() {
    this.title = el("h2", {id: "lb-title", class: "lb-title"});
    this.download = el("a", {class: "button", download: ""}, "Download");
    this.favButton = button("Favourite", () => this.favourite());
    this.zoomButton = button("Zoom in", () => this.setZoom(this.zoom + 1));
    this.infoButton = button("Info", () => this.toggleInfo());
    this.infoButton.setAttribute("aria-expanded", "false");
    this.shareButton = button("Share", () => this.share());
    this.trashButton = button("Move to trash", () => this.trash());
    this.closeButton = button("Close", () => this.close());
    this.prevButton = button("‹", () => this.step(-1), "lb-prev");
    this.prevButton.setAttribute("aria-label", "Previous");
    this.nextButton = button("›", () => this.step(1), "lb-next");
    this.nextButton.setAttribute("aria-label", "Next");
    this.stage = el("div", {class: "lb-stage"});
    this.info = el("aside", {class: "lb-info", "aria-label": "Information", hidden: true});
    this.root = el("div", {class: "lightbox", role: "dialog", "aria-modal": "true", "aria-labelledby": "lb-title", hidden: true},
      el("div", {class: "lb-top"}, this.title,
        el("div", {class: "lb-actions"}, this.infoButton, this.zoomButton, this.download, this.favButton,
          this.shareButton, this.trashButton, this.closeButton)),
      el("div", {class: "lb-body"}, this.prevButton, this.stage, this.nextButton, this.info));
    document.body.append(this.root);
    this.root.addEventListener("keydown", (event) => this.key(event));
    let startX = null;
    this.stage.addEventListener("pointerdown", (event) => { startX = event.clientX; });
    this.stage.addEventListener("pointerup", (event) => {
      if (startX === null || this.zoom) return;
      const dx = event.clientX - startX;
      startX = null;
      if (Math.abs(dx) > 50) this.step(dx < 0 ? 1 : -1);
    });
    this.stage.addEventListener("dblclick", () => this.setZoom(this.zoom + 1));
  }

  get media() {
    return this.items()[this.index];
  }

  open(id) {
    const index = this.items().findIndex((m) => m.id === id);
    if (index < 0) return;
    this.returnFocus = document.activeElement;
    this.root.hidden = false;
    document.body.classList.add("has-lightbox");
    this.show(index);
    this.closeButton.focus();
  }

  close() {
    this.stopPlayback();
    this.root.hidden = true;
    document.body.classList.remove("has-lightbox");
    if (this.returnFocus && this.returnFocus.isConnected) this.returnFocus.focus();
  }

  step(delta) {
    const next = this.index + delta;
    if (next >= 0 && next < this.items().length) this.show(next);
  }

  key(event) {
    if (event.target.closest("textarea, input")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      this.close();
    } else if (event.key === "ArrowRight") {
      event.preventDefault();
      this.step(1);
    } else if (event.key === "ArrowLeft") {
      event.preventDefault();
      this.step(-1);
    } else if (event.key === "Tab") {
      const focusable = [...this.root.querySelectorAll("button, a[href], video, audio, textarea, input, [tabindex]")]
        .filter((n) => !n.hidden && n.offsetParent !== null);
      if (!focusable.length) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    }
  }

  stopPlayback() {
    for (const player of this.stage.querySelectorAll("video, audio")) {
      player.pause();
      player.removeAttribute("src");
      player.load();
    }
  }

  show(index) {
    this.stopPlayback();
    this.index = index;
    this.zoom = 0;
    const media = this.media;
    this.title.textContent = `${media.name} · ${whenLabel(media.taken_at)}`;
    this.download.href = media.original_url;
    this.download.setAttribute("download", media.name || "");
    this.download.hidden = media.allow_download === false;
    this.favButton.hidden = !("favourite" in media);
    this.favButton.setAttribute("aria-pressed", media.favourite ? "true" : "false");
    this.favButton.textContent = media.favourite ? "♥ Favourite" : "♡ Favourite";
    this.zoomButton.hidden = media.kind !== "image";
    this.zoomButton.textContent = "Zoom in";
    this.prevButton.disabled = index === 0;
    this.nextButton.disabled = index === this.items().length - 1;
    this.stage.replaceChildren(this.content(media));
    this.stage.classList.remove("zoomed");
    if (!this.info.hidden) this.loadInfo();
    this.preload(index + 1);
  }

  screenVariant(media) {
    const box = this.stage.getBoundingClientRect();
    return pickVariant(media, box.width || window.innerWidth, box.height || window.innerHeight);
  }

  content(media) {
    const variants = media.variants || {};
    const poster = pickVariant(media, 1080, 1080);
    if (media.kind === "image" && poster) {
      const v = this.screenVariant(media);
      return el("img", {class: "lb-image", src: v.url, alt: media.name || "Photo", width: v.width, height: v.height});
    }
    if (media.kind === "video") {
      const video = el("video", {controls: true, preload: "metadata", class: "lb-video", poster: poster ? poster.url : null,
        "aria-label": media.name || "Video"});
      if (variants.webm) video.append(el("source", {src: variants.webm.url, type: "video/webm"}));
      const play = variants.play || {url: media.original_url, content_type: media.content_type};
      video.append(el("source", {src: play.url, type: play.content_type || media.content_type}));
      return video;
    }
    if (media.kind === "audio") {
      return el("figure", {class: "lb-audio"},
        poster ? el("img", {src: poster.url, alt: `Cover of ${media.name}`, width: poster.width, height: poster.height})
          : el("span", {class: "lb-icon", "aria-hidden": "true"}, ICONS.audio),
        el("figcaption", {}, media.name),
        el("audio", {controls: true, preload: "metadata", src: media.original_url, "aria-label": media.name || "Audio"}));
    }
    return el("div", {class: "lb-file"},
      el("span", {class: "lb-icon", "aria-hidden": "true"}, ICONS[media.kind] || ICONS.other),
      el("p", {}, `${media.name} · ${human(media.size)} · ${media.content_type}`),
      media.status === "ready" || media.kind === "document" || media.kind === "other"
        ? el("a", {class: "button", href: media.original_url, download: media.name || ""}, `Download ${media.name}`) : null,
      media.status !== "ready" ? el("p", {class: "muted"}, `Status: ${media.status}${media.error ? ` (${media.error})` : ""}`) : null);
  }

  preload(index) {
    const next = this.items()[index];
    if (next && next.kind === "image") {
      const v = this.screenVariant(next);
      if (v) new Image().src = v.url;
    }
  }

  setZoom(level) {
    const media = this.media;
    if (media.kind !== "image") return;
    const img = this.stage.querySelector("img");
    if (!img) return;
    this.zoom = level % 3;
    const variants = media.variants || {};
    if (this.zoom === 0) {
      const v = this.screenVariant(media);
      img.src = v.url;
      this.stage.classList.remove("zoomed");
      this.zoomButton.textContent = "Zoom in";
    } else if (this.zoom === 1) {
      img.src = (variants["6"] || this.screenVariant(media)).url;
      this.stage.classList.add("zoomed");
      this.zoomButton.textContent = "Zoom to original";
    } else {
      img.src = media.original_url;
      this.zoomButton.textContent = "Zoom out";
    }
    img.removeAttribute("width");
    img.removeAttribute("height");
  }

  toggleInfo() {
    this.info.hidden = !this.info.hidden;
    this.infoButton.setAttribute("aria-expanded", String(!this.info.hidden));
    if (!this.info.hidden) this.loadInfo();
  }

  async loadInfo() {
    const media = this.media;
    const base = media.info_url || `/info/${media.id}/`;
    this.info.replaceChildren(el("p", {"aria-busy": "true"}, "Loading…"));
    try {
      const response = await api(base, {raw: true});
      if (!response.ok) throw new Error(`The information could not be loaded (${response.status}).`);
      const html = await response.text();
      if (this.media !== media) return;
      const holder = document.createElement("template");
      holder.innerHTML = html;
      this.info.replaceChildren(holder.content);
    } catch (error) {
      this.info.replaceChildren(el("p", {class: "error"}, error.message));
      return;
    }
    this.infoExtras(media);
    const map = this.info.querySelector(".mini-map");
    if (map) this.miniMap(map);
  }

  infoExtras(media) {
    if (Array.isArray(media.tags)) {
      this.info.append(el("h3", {}, "Tags"), el("p", {class: "chips"},
        ...(media.tags.length ? media.tags.map((t) => el("a", {class: "chip", href: `/search/?tag=${encodeURIComponent(t)}`}, t)) : ["None"])));
    }
    if (Array.isArray(media.albums)) {
      const list = el("p", {class: "chips"}, media.albums.length ? "" : "None");
      this.info.append(el("h3", {}, "Albums"), list);
      for (const id of media.albums) list.append(el("a", {class: "chip", href: `/albums/${id}/`}, `Album ${id}`));
      if (media.albums.length) {
        (async () => {
          const titles = new Map();
          for await (const data of pages("/api/v1/albums/?page_size=500")) {
            for (const a of data.results || data) titles.set(String(a.id), a.title);
          }
          for (const link of list.querySelectorAll("a")) {
            const id = link.getAttribute("href").split("/")[2];
            if (titles.has(id)) link.textContent = titles.get(id);
          }
        })().catch(() => {});
      }
    }
    if ("description" in media) {
      const area = el("textarea", {id: "lb-description", rows: 3}, );
      area.value = media.description || "";
      const save = button("Save description", async () => {
        try {
          const updated = await api(`/api/v1/media/${media.id}/`, {method: "PATCH", body: {description: area.value}});
          Object.assign(media, updated);
          this.onChanged(media);
          notify("Description saved");
        } catch (error) {
          showError(error, "Could not save the description");
        }
      });
      this.info.append(el("label", {for: "lb-description"}, "Description"), area, save);
    }
  }

  async miniMap(node) {
    try {
      const L = await loadLeaflet();
      const lat = Number(node.dataset.lat);
      const lon = Number(node.dataset.lon);
      // Not interactive (no focusable part): the panel's text says where; the map page is for maps.
      const map = L.map(node, {attributionControl: false, zoomControl: false, keyboard: false, dragging: false,
        scrollWheelZoom: false, doubleClickZoom: false, boxZoom: false, touchZoom: false}).setView([lat, lon], 12);
      tileLayer(L).addTo(map);
      L.circleMarker([lat, lon], {radius: 7, interactive: false}).addTo(map);
    } catch (error) {
      node.textContent = "The map could not be shown.";
    }
  }

  async favourite() {
    const media = this.media;
    const on = !media.favourite;
    try {
      await api(`/api/v1/media/${media.id}/favourite`, {method: on ? "POST" : "DELETE"});
      media.favourite = on;
      this.onChanged(media);
      this.show(this.index);
      this.favButton.focus();
    } catch (error) {
      showError(error, "Could not change the favourite");
    }
  }

  async share() {
    const media = this.media;
    try {
      const share = await api("/api/v1/shares/", {method: "POST", body: {media: media.id, allow_download: true}});
      const url = new URL(share.url, location.href).href;
      const field = el("input", {type: "text", readonly: true, value: url, "aria-label": "Share link", class: "share-url"});
      const copy = button("Copy link", () => navigator.clipboard.writeText(url).then(() => notify("Link copied")));
      this.info.hidden = false;
      this.infoButton.setAttribute("aria-expanded", "true");
      this.info.replaceChildren(el("h3", {}, "Share link"), field, copy);
      field.select();
    } catch (error) {
      showError(error, "Could not create a share link");
    }
  }

  async trash() {
    const media = this.media;
    try {
      await api(`/api/v1/media/${media.id}/`, {method: "DELETE"});
    } catch (error) {
      showError(error, "Could not move it to the trash");
      return;
    }
    notify(`${media.name} moved to the trash`);
    this.onRemoved(media.id);
    const items = this.items();
    if (!items.length) this.close();
    else this.show(Math.min(this.index, items.length - 1));
  }
}
