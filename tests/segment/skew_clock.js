// Preloaded with `node --require skew_clock.js`: moves this process's clock EPP_SKEW_MS ahead
// (Date.now() and new Date() without arguments), as a client device with a wrong clock would be.
"use strict";
const RealDate = Date;
const skew = parseInt(process.env.EPP_SKEW_MS || "0", 10);
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + skew);
    else super(...args);
  }
  static now() {
    return RealDate.now() + skew;
  }
}
global.Date = SkewedDate;
