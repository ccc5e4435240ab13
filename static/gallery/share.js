// The lightbox of a share page (templates/gallery/share.html): click a tile to see the item
// large, arrows or the keyboard (←, →, Esc) to move and close. Without this script the tiles
// are plain links to the large picture.
const grid = document.getElementById("share-grid");
const box = document.getElementById("lightbox");
if (grid && box) {
  const tiles = Array.from(grid.querySelectorAll("li[data-name]"));
  const stage = document.getElementById("lightbox-stage");
  const name = document.getElementById("lightbox-name");
  const download = document.getElementById("lightbox-download");
  let current = -1;

  function show(index) {
    current = (index + tiles.length) % tiles.length;
    const tile = tiles[current].dataset;
    stage.replaceChildren();
    let element;
    if (tile.play) {
      element = document.createElement(tiles[current].classList.contains("audio") ? "audio" : "video");
      element.controls = true;
      element.src = tile.play;
      if (tile.large) element.poster = tile.large;
    } else if (tile.large) {
      element = document.createElement("img");
      element.src = tile.large;
      element.alt = tile.name;
    } else {
      element = document.createElement("p");
      element.textContent = "No preview";
    }
    stage.append(element);
    name.textContent = tile.name;
    download.hidden = !tile.download;
    download.href = tile.download || "#";
    box.hidden = false;
  }

  function close() {
    box.hidden = true;
    stage.replaceChildren();  // stops a playing video
    current = -1;
  }

  tiles.forEach((tile, index) => {
    tile.querySelector("a").addEventListener("click", (event) => {
      event.preventDefault();
      show(index);
    });
  });
  document.getElementById("lightbox-prev").addEventListener("click", () => show(current - 1));
  document.getElementById("lightbox-next").addEventListener("click", () => show(current + 1));
  document.getElementById("lightbox-close").addEventListener("click", close);
  box.addEventListener("click", (event) => { if (event.target === box) close(); });
  document.addEventListener("keydown", (event) => {
    if (box.hidden) return;
    if (event.key === "Escape") close();
    else if (event.key === "ArrowLeft") show(current - 1);
    else if (event.key === "ArrowRight") show(current + 1);
  });
}
