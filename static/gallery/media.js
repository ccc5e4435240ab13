// Which variant of a media to show for a box of a given size, from the levels the media JSON
// lists (1..6 fit 10..1080 px on the long side; 1s..4s are squares of 10..320 px).
import {kindLabel, whenLabel} from "./api.js";

const FIT = ["1", "2", "3", "4", "5", "6"];
const SQUARE = ["1s", "2s", "3s", "4s"];

export function placeholderUrl(media) {
  const v = media.variants || {};
  return (v["1"] || v["1s"] || {}).url || "";
}

// The smallest variant that covers width x height CSS pixels at this device pixel ratio;
// the largest there is when none does.
export function pickVariant(media, width, height, {square = false, dpr = window.devicePixelRatio || 1} = {}) {
  const variants = media.variants || {};
  const needW = width * dpr;
  const needH = height * dpr;
  const order = square ? [...SQUARE, ...FIT] : FIT;
  let best = null;
  for (const level of order) {
    const v = variants[level];
    if (!v) continue;
    best = v;
    const covers = square && SQUARE.includes(level)
      ? v.width >= Math.max(needW, needH)
      : v.width >= needW && v.height >= needH;
    if (covers) return v;
  }
  return best;
}

export function aspectOf(media) {
  const v = (media.variants || {})["3"] || (media.variants || {})["4"];
  const w = (v && v.width) || media.width;
  const h = (v && v.height) || media.height;
  if (!w || !h) return 1;
  return Math.min(3, Math.max(1 / 3, w / h));
}

export function labelOf(media) {
  const parts = [kindLabel(media.kind), whenLabel(media.taken_at), media.name];
  if (media.status && media.status !== "ready") parts.push(media.status);
  return parts.filter(Boolean).join(", ");
}

export const ICONS = {audio: "♪", document: "📄", other: "📦", video: "▶", image: "🖼"};
