package stream

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nkbridge/nkbridge/media/codec"
)

// Framings of a stream's WebSocket messages.
const (
	FramingNkbridge = "nkbridge" // JSON start/dtmf/stop text frames, binary 16-bit PCM frames
	FramingTwilio   = "twilio"   // Twilio Media Streams: JSON events, base64 µ-law 8 kHz
)

// Mixes: which audio a stream carries.
const (
	MixMono   = "mono"   // the caller's audio only, one channel
	MixStereo = "stereo" // two channels: left the caller, right the far side
	MixMixed  = "mixed"  // both sides summed into one channel
)

// appMsg is one message from the application, decoded.
type appMsg struct {
	kind string  // "audio", "clear", "mark", "hangup", "ignore"
	pcm  []int16 // audio at the stream's rate (kind "audio")
	name string  // mark name
}

// Errors of the application's messages (counted as garbage; the stream goes on).
var (
	errGarbage = errors.New("stream: message not understood")
	errOddPCM  = errors.New("stream: binary audio frame of an odd length (want 16-bit samples)")
)

// maxMarkName bounds a mark's name (it is echoed back).
const maxMarkName = 256

// parseApp decodes one WebSocket message of the application in framing (binary: whether the
// frame was binary). Audio comes back as PCM at the stream's rate (Twilio: µ-law 8 kHz).
func parseApp(framing string, binary bool, data []byte) (appMsg, error) {
	if framing == FramingTwilio {
		if binary {
			return appMsg{}, fmt.Errorf("%w: binary frame in twilio framing", errGarbage)
		}
		return parseTwilio(data)
	}
	if binary {
		if len(data)%2 != 0 {
			return appMsg{}, errOddPCM
		}
		return appMsg{kind: "audio", pcm: decodePCM(data)}, nil
	}
	var m struct {
		Event string `json:"event"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return appMsg{}, fmt.Errorf("%w: %v", errGarbage, err)
	}
	switch m.Event {
	case "clear":
		return appMsg{kind: "clear"}, nil
	case "mark":
		if m.Name == "" || len(m.Name) > maxMarkName {
			return appMsg{}, fmt.Errorf("%w: mark needs a name of 1 to %d bytes", errGarbage, maxMarkName)
		}
		return appMsg{kind: "mark", name: m.Name}, nil
	case "hangup":
		return appMsg{kind: "hangup"}, nil
	case "":
		return appMsg{}, fmt.Errorf("%w: no event", errGarbage)
	}
	return appMsg{}, fmt.Errorf("%w: unknown event %q", errGarbage, m.Event)
}

func parseTwilio(data []byte) (appMsg, error) {
	var m struct {
		Event string `json:"event"`
		Media *struct {
			Payload string `json:"payload"`
		} `json:"media"`
		Mark *struct {
			Name string `json:"name"`
		} `json:"mark"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return appMsg{}, fmt.Errorf("%w: %v", errGarbage, err)
	}
	switch m.Event {
	case "media":
		if m.Media == nil {
			return appMsg{}, fmt.Errorf("%w: media without media.payload", errGarbage)
		}
		raw, err := base64.StdEncoding.DecodeString(m.Media.Payload)
		if err != nil {
			return appMsg{}, fmt.Errorf("%w: media.payload is not base64", errGarbage)
		}
		pcm := make([]int16, len(raw))
		for i, b := range raw {
			pcm[i] = codec.UlawToLinear(b)
		}
		return appMsg{kind: "audio", pcm: pcm}, nil
	case "clear":
		return appMsg{kind: "clear"}, nil
	case "mark":
		if m.Mark == nil || m.Mark.Name == "" || len(m.Mark.Name) > maxMarkName {
			return appMsg{}, fmt.Errorf("%w: mark needs mark.name of 1 to %d bytes", errGarbage, maxMarkName)
		}
		return appMsg{kind: "mark", name: m.Mark.Name}, nil
	case "connected", "start", "stop", "dtmf":
		return appMsg{kind: "ignore"}, nil // an echo of our own events: harmless
	case "":
		return appMsg{}, fmt.Errorf("%w: no event", errGarbage)
	}
	return appMsg{}, fmt.Errorf("%w: unknown event %q", errGarbage, m.Event)
}

func decodePCM(b []byte) []int16 {
	out := make([]int16, len(b)/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return out
}

func encodePCM(dst []byte, pcm []int16) []byte {
	for _, v := range pcm {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(v))
	}
	return dst
}

// twilioSeq formats Twilio's string counters.
func twilioSeq(n uint64) string { return strconv.FormatUint(n, 10) }
