package vertotest

import "time"

func deadline() time.Time { return time.Now().Add(5 * time.Second) }
