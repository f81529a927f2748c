// mla_cmg site script (docs/build.py copies docs/static/ into the site's _static/).
// Every figure of a page links to its full-size file, so a reader can enlarge what is shown scaled down.
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll("article img")) {
    if (img.closest("a")) continue;
    const a = document.createElement("a");
    a.href = img.getAttribute("src"); a.className = "mla-cmg-full"; a.title = "full size";
    img.parentNode.insertBefore(a, img); a.appendChild(img);
  }
});
