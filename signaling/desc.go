package signaling

// Desc is an offer or answer descriptor: {sdp, sdp_type, caller_name,
// caller_id, callee_name, callee_id, use_audio, use_video, ...}. It is kept as
// a JSON object so that fields nkbridge does not know travel untouched.
type Desc map[string]any

// SDP returns the descriptor's "sdp" field, or "".
func (d Desc) SDP() string { return d.String("sdp") }

// SDPType returns "sdp_type" ("webrtc" when absent).
func (d Desc) SDPType() string {
	if t := d.String("sdp_type"); t != "" {
		return t
	}
	return "webrtc"
}

// String returns a string field, or "" when absent or not a string.
func (d Desc) String(key string) string {
	if d == nil {
		return ""
	}
	s, _ := d[key].(string)
	return s
}

// Clone returns a shallow copy (nil stays nil).
func (d Desc) Clone() Desc {
	if d == nil {
		return nil
	}
	c := make(Desc, len(d))
	for k, v := range d {
		c[k] = v
	}
	return c
}
