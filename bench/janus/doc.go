// Package janus holds a side-by-side benchmark of nkbridge's embedded rooms against Janus
// (Debian's janus package): SFU fan-out (one publisher to N listeners, VideoRoom) and audio
// mixer cost per participant (AudioBridge), on the same pion WebRTC load, measuring each
// server process's CPU time from /proc. It is not part of the normal test suite: the benchmark
// is behind the janusbench build tag and is run by run.sh, which installs janus, creates a
// private network namespace with a veth pair for it and tears it down afterwards.
package janus
