// The year and month scrubber along the right edge: a button per year (and per month in a
// tooltip-like column while dragging), placed where that year starts in the grid; dragging
// along it scrolls the page to the month under the pointer.
import {el, monthLabel} from "./api.js";

export class Scrubber {
  constructor(root, grid) {
    this.root = root;
    this.grid = grid;
    if (!root) return;
    this.label = el("span", {class: "scrub-label", "aria-hidden": "true", hidden: true});
    this.years = el("ol", {class: "scrub-years"});
    root.append(this.years, this.label);
    let dragging = false;
    const move = (event) => {
      const rect = root.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height));
      const section = this.sectionAt(fraction * this.grid.height);
      if (!section) return;
      this.label.hidden = false;
      this.label.textContent = section.label || monthLabel(section.key);
      this.label.style.top = `${fraction * 100}%`;
      if (dragging) window.scrollTo(0, this.grid.offsetTop() + fraction * (this.grid.height - window.innerHeight / 2));
    };
    root.addEventListener("pointerdown", (event) => {
      if (event.target.closest("button")) return;
      dragging = true;
      root.setPointerCapture(event.pointerId);
      move(event);
    });
    root.addEventListener("pointermove", move);
    root.addEventListener("pointerup", () => { dragging = false; });
    root.addEventListener("pointerleave", () => { if (!dragging) this.label.hidden = true; });
  }

  sectionAt(y) {
    let found = null;
    for (const section of this.grid.sections) {
      if (section.key === "more") continue;
      if (section.top <= y) found = section;
      else break;
    }
    return found;
  }

  update() {
    if (!this.root) return;
    const height = this.grid.height || 1;
    const years = new Map();
    for (const section of this.grid.sections) {
      if (section.key === "more") continue;
      const year = section.key.slice(0, 4);
      if (!years.has(year)) years.set(year, section);
    }
    this.root.hidden = years.size === 0;
    const items = [];
    let lastTop = -10;
    for (const [year, section] of years) {
      const top = (section.top / height) * 100;
      const item = el("li", {}, el("button", {type: "button", "aria-label": `Go to ${year}`, class: top - lastTop < 3 ? "crowded" : "",
        onclick: () => this.grid.scrollToSection(section.key)}, year));
      item.style.top = `${top}%`;
      if (top - lastTop >= 3) lastTop = top;
      items.push(item);
    }
    // A tick for every month (a picture of where the months are; the drag label names them).
    for (const section of this.grid.sections) {
      if (section.key === "more" || !section.height) continue;
      const tick = el("li", {class: "tick", "aria-hidden": "true"});
      tick.style.top = `${(section.top / height) * 100}%`;
      items.push(tick);
    }
    this.years.replaceChildren(...items);
  }
}
