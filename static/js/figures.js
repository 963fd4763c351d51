// How the pages print a probability, in one place for every script (engine.headline in Python):
// whole percent rounded half to even as Python's round() does (0.684 -> 68; 0.785 -> 78), and a
// risk above zero that prints as 0 reads "<1%" (engine.headline.shown_percent_text).
(function () {
  "use strict";

  function roundHalfEven(value) {
    var floor = Math.floor(value);
    var rest = value - floor;
    if (rest > 0.5) { return floor + 1; }
    if (rest < 0.5) { return floor; }
    return floor % 2 === 0 ? floor : floor + 1;
  }

  function shownPercent(risk) {
    return roundHalfEven(100 * risk);
  }

  function shownPercentText(risk) {
    var shown = shownPercent(risk);
    return shown === 0 && risk > 0 ? "<1%" : shown + "%";
  }

  window.SightlineFigures = { shownPercent: shownPercent, shownPercentText: shownPercentText };
})();
