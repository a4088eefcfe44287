// Pipeline board: dragging a deal card onto another column sets the card's stage select and
// submits its form: the same request as the no-JavaScript path. Delegated on document, so it
// keeps working after htmx swaps the page; loaded once (in <head>).
(function () {
  "use strict";
  document.addEventListener("dragstart", function (event) {
    var card = event.target.closest && event.target.closest(".deal-card");
    if (!card) return;
    event.dataTransfer.setData("text/plain", card.id);
    event.dataTransfer.effectAllowed = "move";
    card.classList.add("dragging");
  });
  document.addEventListener("dragend", function (event) {
    var card = event.target.closest && event.target.closest(".deal-card");
    if (card) card.classList.remove("dragging");
  });
  document.addEventListener("dragover", function (event) {
    var column = event.target.closest && event.target.closest(".board-column");
    if (column) { event.preventDefault(); event.dataTransfer.dropEffect = "move"; }
  });
  document.addEventListener("drop", function (event) {
    var column = event.target.closest && event.target.closest(".board-column");
    if (!column) return;
    event.preventDefault();
    var card = document.getElementById(event.dataTransfer.getData("text/plain"));
    if (!card || card.closest(".board-column") === column) return;
    var form = card.querySelector("form.move");
    form.elements.stage_id.value = column.dataset.stageId;
    form.requestSubmit();
  });
})();
