package bench

import "time"

var timeNow = time.Now
