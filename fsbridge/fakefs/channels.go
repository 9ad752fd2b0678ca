package fakefs

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SessionHeader is the SIP header nkbridge puts on its INVITEs to FreeSWITCH; FreeSWITCH
// exposes it as the channel variable sip_h_X-NKB-Session.
const SessionHeader = "X-NKB-Session"

// What testdata/freeswitch configures (config_test.go keeps the two in step).
const (
	DefaultContext    = "nkbridge"       // dialplan context of the nkbridge SIP profile
	ConferenceProfile = "nkbridge"       // conference profile for mcu sessions
	SIPProfile        = "nkbridge"       // SIP profile name
	SIPAddr           = "127.0.0.1:5090" // where the nkbridge SIP profile listens
	ESLAddr           = "127.0.0.1:8021" // event socket of the shipped configuration
)

// ChannelSpec describes a new channel (what a SIP INVITE to FreeSWITCH would create).
type ChannelSpec struct {
	UUID           string            // generated when empty
	Name           string            // default "sofia/nkbridge/<dest>@127.0.0.1"
	Direction      string            // default "inbound"
	CallerIDName   string            // default "nkbridge"
	CallerIDNumber string            // default "nkbridge"
	Dest           string            // destination number, default "park"
	Context        string            // dialplan context, default "nkbridge"
	NetworkAddr    string            // default 127.0.0.1
	SIPHeaders     map[string]string // X- headers; each becomes variable_sip_h_<name>
	Vars           map[string]string // other channel variables
}

// Channel is a snapshot of a fake channel.
type Channel struct {
	UUID, Name, Direction         string
	CallerIDName, CallerIDNumber  string
	Dest, Context, NetworkAddr    string
	State, CallState, AnswerState string
	Application, ApplicationData  string
	Conference, ConferenceProfile string
	MemberID                      int
	BridgedTo                     string
	Created                       time.Time
	Vars                          map[string]string // without the "variable_" prefix
	varOrder                      []string
}

// Var returns a channel variable.
func (c *Channel) Var(name string) string { return c.Vars[name] }

type room struct {
	name, profile string
	members       []string // channel uuids, in join order
	nextID        int
	layout        string
	uuid          string
}

type chanModel struct {
	byUUID map[string]*Channel
	order  []string
	rooms  map[string]*room

	// The channels table "show channels" reads: FreeSWITCH writes it from the channel
	// events through its SQL queue, so it runs behind the channels themselves
	// (Options.ShowChannelsLag). Changes wait in pending until due.
	table      map[string]*Channel
	tableOrder []string
	pending    []tableChange

	// sessions-per-second: FreeSWITCH's core counts down from the limit and refuses a new
	// session once the count reaches 0; its timer thread resets the count every second.
	spsWindow int64
	spsLeft   int
}

// tableChange is one pending write to the channels table (row nil: delete).
type tableChange struct {
	due time.Time
	id  string
	row *Channel
}

func (m *chanModel) init() {
	m.byUUID = map[string]*Channel{}
	m.rooms = map[string]*room{}
	m.table = map[string]*Channel{}
	m.spsWindow = -1
}

// syncRow queues the channel's current state for the channels table (s.mu held).
func (s *Server) syncRow(c *Channel) {
	row := c.clone()
	s.chans.pending = append(s.chans.pending, tableChange{due: time.Now().Add(s.opts.ShowChannelsLag), id: c.UUID, row: &row})
}

// dropRow queues the deletion of a channel's row (s.mu held).
func (s *Server) dropRow(id string) {
	s.chans.pending = append(s.chans.pending, tableChange{due: time.Now().Add(s.opts.ShowChannelsLag), id: id})
}

// ShowChannels returns what "show channels" would list now: the channels table, which
// runs Options.ShowChannelsLag behind Channels.
func (s *Server) ShowChannels() []Channel { return s.tableRows() }

// tableRows applies the due changes and returns the channels table in insertion order.
func (s *Server) tableRows() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &s.chans
	now := time.Now()
	n := 0
	for _, ch := range m.pending {
		if ch.due.After(now) {
			break
		}
		n++
		if ch.row == nil {
			if _, ok := m.table[ch.id]; ok {
				delete(m.table, ch.id)
				m.tableOrder = slices.DeleteFunc(m.tableOrder, func(u string) bool { return u == ch.id })
			}
			continue
		}
		if _, ok := m.table[ch.id]; !ok {
			m.tableOrder = append(m.tableOrder, ch.id)
		}
		m.table[ch.id] = ch.row
	}
	m.pending = append(m.pending[:0], m.pending[n:]...)
	out := make([]Channel, 0, len(m.tableOrder))
	for _, id := range m.tableOrder {
		out = append(out, m.table[id].clone())
	}
	return out
}

// ErrSessionRate is returned by NewChannel (and Route) when FreeSWITCH's
// sessions-per-second limit refuses a new session; mod_sofia answers such an INVITE
// "503 Maximum Calls In Progress".
var ErrSessionRate = errors.New("fakefs: over the session rate (switch.conf.xml sessions-per-second)")

// takeSession applies the sessions-per-second throttle of switch_core_session_request
// (s.mu held): the count starts at the limit each second and a request fails once the
// decremented count is not positive, so FreeSWITCH accepts limit-1 sessions a second.
func (s *Server) takeSession() bool {
	if s.opts.SessionsPerSecond <= 0 {
		return true
	}
	w := int64(time.Since(s.started) / time.Second)
	if w != s.chans.spsWindow {
		s.chans.spsWindow, s.chans.spsLeft = w, s.opts.SessionsPerSecond
	}
	s.chans.spsLeft--
	return s.chans.spsLeft > 0
}

func (m *chanModel) remove(id string) {
	delete(m.byUUID, id)
	for i, u := range m.order {
		if u == id {
			m.order = append(m.order[:i], m.order[i+1:]...)
			break
		}
	}
}

func (c *Channel) clone() Channel {
	out := *c
	out.Vars = make(map[string]string, len(c.Vars))
	for k, v := range c.Vars {
		out.Vars[k] = v
	}
	out.varOrder = append([]string(nil), c.varOrder...)
	return out
}

func (c *Channel) setVar(k, v string) {
	if _, ok := c.Vars[k]; !ok {
		c.varOrder = append(c.varOrder, k)
	}
	c.Vars[k] = v
}

// channelData reproduces switch_channel_event_set_data: basic data (with the caller
// profile), then the variables.
func channelData(c *Channel, extra ...Header) []Header {
	hs := basicData(c, extra...)
	for _, k := range c.varOrder {
		hs = append(hs, Header{"variable_" + k, c.Vars[k]})
	}
	return hs
}

// basicData reproduces switch_channel_event_set_basic_data: the channel's state and the
// caller profile, no variables.
func basicData(c *Channel, extra ...Header) []Header {
	hs := []Header{
		{"Channel-State", c.State},
		{"Channel-Call-State", c.CallState},
		{"Channel-State-Number", stateNumber(c.State)},
		{"Channel-Name", c.Name},
		{"Unique-ID", c.UUID},
		{"Call-Direction", c.Direction},
		{"Presence-Call-Direction", c.Direction},
		{"Channel-HIT-Dialplan", "true"},
		{"Channel-Call-UUID", c.UUID},
		{"Answer-State", c.AnswerState},
	}
	hs = append(hs, extra...)
	hs = append(hs,
		Header{"Caller-Direction", c.Direction},
		Header{"Caller-Logical-Direction", c.Direction},
		Header{"Caller-Username", c.CallerIDNumber},
		Header{"Caller-Dialplan", "XML"},
		Header{"Caller-Caller-ID-Name", c.CallerIDName},
		Header{"Caller-Caller-ID-Number", c.CallerIDNumber},
		Header{"Caller-Network-Addr", c.NetworkAddr},
		Header{"Caller-ANI", c.CallerIDNumber},
		Header{"Caller-Destination-Number", c.Dest},
		Header{"Caller-Unique-ID", c.UUID},
		Header{"Caller-Source", "mod_sofia"},
		Header{"Caller-Context", c.Context},
		Header{"Caller-Channel-Name", c.Name},
		Header{"Caller-Profile-Index", "1"},
		Header{"Caller-Channel-Created-Time", strconv.FormatInt(c.Created.UnixMicro(), 10)},
	)
	return hs
}

func stateNumber(s string) string {
	switch s {
	case "CS_NEW":
		return "0"
	case "CS_INIT":
		return "1"
	case "CS_ROUTING":
		return "2"
	case "CS_EXECUTE":
		return "4"
	case "CS_HANGUP":
		return "10"
	case "CS_REPORTING":
		return "11"
	case "CS_DESTROY":
		return "12"
	}
	return "0"
}

func (s *Server) fireChannel(name string, c *Channel, after []Header, extra ...Header) {
	ev := &Event{Name: name}
	ev.Headers = append(s.baseHeaders(name, "", "switch_channel.c", "fake_"+strings.ToLower(name), 1), channelData(c, extra...)...)
	ev.Headers = append(ev.Headers, after...)
	s.deliver(ev)
}

// NewChannel creates a channel in CS_EXECUTE/RINGING and fires CHANNEL_CREATE.
func (s *Server) NewChannel(spec ChannelSpec) (Channel, error) {
	if spec.UUID == "" {
		spec.UUID = uuid.NewString()
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&spec.Dest, "park")
	def(&spec.Name, "sofia/nkbridge/"+spec.Dest+"@127.0.0.1")
	def(&spec.Direction, "inbound")
	def(&spec.CallerIDName, "nkbridge")
	def(&spec.CallerIDNumber, "nkbridge")
	def(&spec.Context, DefaultContext)
	def(&spec.NetworkAddr, "127.0.0.1")
	c := &Channel{
		UUID: spec.UUID, Name: spec.Name, Direction: spec.Direction,
		CallerIDName: spec.CallerIDName, CallerIDNumber: spec.CallerIDNumber,
		Dest: spec.Dest, Context: spec.Context, NetworkAddr: spec.NetworkAddr,
		State: "CS_INIT", CallState: "RINGING", AnswerState: "ringing",
		Created: time.Now(), Vars: map[string]string{},
	}
	c.setVar("direction", c.Direction)
	c.setVar("uuid", c.UUID)
	c.setVar("session_id", "1")
	c.setVar("sip_profile_name", SIPProfile)
	c.setVar("channel_name", c.Name)
	names := make([]string, 0, len(spec.SIPHeaders))
	for k := range spec.SIPHeaders {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		c.setVar("sip_h_"+k, spec.SIPHeaders[k])
	}
	names = names[:0]
	for k := range spec.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		c.setVar(k, spec.Vars[k])
	}
	s.mu.Lock()
	if _, dup := s.chans.byUUID[c.UUID]; dup {
		s.mu.Unlock()
		return Channel{}, fmt.Errorf("fakefs: channel %s exists", c.UUID)
	}
	if !s.takeSession() {
		s.mu.Unlock()
		return Channel{}, ErrSessionRate
	}
	s.chans.byUUID[c.UUID] = c
	s.chans.order = append(s.chans.order, c.UUID)
	s.syncRow(c)
	snap := c.clone()
	s.mu.Unlock()
	s.fireChannel("CHANNEL_CREATE", &snap, nil)
	return snap, nil
}

// InboundCall models what testdata/freeswitch's dialplan does with an INVITE from
// nkbridge: create the channel (CHANNEL_CREATE), answer it (CHANNEL_ANSWER) and park it
// (CHANNEL_EXECUTE park, CHANNEL_PARK).
func (s *Server) InboundCall(spec ChannelSpec) (Channel, error) {
	c, err := s.NewChannel(spec)
	if err != nil {
		return c, err
	}
	if err := s.Answer(c.UUID); err != nil {
		return c, err
	}
	if err := s.Execute(c.UUID, "park", ""); err != nil {
		return c, err
	}
	ch, _ := s.Channel(c.UUID)
	return ch, nil
}

// Channel returns a snapshot of a live channel.
func (s *Server) Channel(id string) (Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.chans.byUUID[id]
	if !ok {
		return Channel{}, false
	}
	return c.clone(), true
}

// Channels returns snapshots of all live channels in creation order.
func (s *Server) Channels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Channel, 0, len(s.chans.order))
	for _, id := range s.chans.order {
		out = append(out, s.chans.byUUID[id].clone())
	}
	return out
}

// Answer answers a channel and fires CHANNEL_ANSWER.
func (s *Server) Answer(id string) error {
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("fakefs: no channel %s", id)
	}
	c.State, c.CallState, c.AnswerState = "CS_EXECUTE", "ACTIVE", "answered"
	s.syncRow(c)
	snap := c.clone()
	s.mu.Unlock()
	s.fireChannel("CHANNEL_ANSWER", &snap, nil)
	return nil
}

// Execute runs an application on a channel the way FreeSWITCH reports it: CHANNEL_EXECUTE,
// then the application's own events (park → CHANNEL_PARK, conference → add-member;
// leaving park → CHANNEL_UNPARK, leaving a conference → del-member) and, for
// applications that return at once, CHANNEL_EXECUTE_COMPLETE.
func (s *Server) Execute(id, app, data string) error {
	return s.execute(id, app, data, "")
}

func (s *Server) execute(id, app, data, appUUID string) error {
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("fakefs: no channel %s", id)
	}
	s.mu.Unlock()
	if appUUID == "" {
		appUUID = uuid.NewString()
	}
	blocking := app == "park" || app == "conference" || app == "echo"
	if blocking {
		s.leaveApp(id)
	}
	s.mu.Lock()
	c.State = "CS_EXECUTE"
	if blocking {
		c.Application, c.ApplicationData = app, data
	}
	// switch_core_session_execute_application sets these for every application; they
	// stay after it returns.
	c.setVar("current_application", app)
	c.setVar("current_application_data", data)
	if app == "set" {
		if k, v, ok := strings.Cut(data, "="); ok {
			c.setVar(k, v)
		}
	}
	s.syncRow(c)
	snap := c.clone()
	s.mu.Unlock()
	appHdrs := []Header{{"Application", app}, {"Application-Data", data}, {"Application-UUID", appUUID}}
	s.fireChannel("CHANNEL_EXECUTE", &snap, appHdrs)
	switch app {
	case "park":
		s.fireChannel("CHANNEL_PARK", &snap, nil)
	case "conference":
		s.joinConference(id, data)
	case "answer":
		if snap.AnswerState != "answered" {
			s.Answer(id)
			snap, _ = s.Channel(id)
		}
	}
	if !blocking {
		s.fireChannel("CHANNEL_EXECUTE_COMPLETE", &snap, append(appHdrs, Header{"Application-Response", "_none_"}))
	}
	return nil
}

// leaveApp ends the channel's current blocking application.
func (s *Server) leaveApp(id string) {
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	app, data := c.Application, c.ApplicationData
	c.Application, c.ApplicationData = "", ""
	s.syncRow(c)
	snap := c.clone()
	s.mu.Unlock()
	switch app {
	case "park":
		s.fireChannel("CHANNEL_UNPARK", &snap, nil)
	case "conference":
		s.leaveConference(id)
	}
	if app != "" {
		s.fireChannel("CHANNEL_EXECUTE_COMPLETE", &snap, []Header{{"Application", app}, {"Application-Data", data}, {"Application-Response", "_none_"}})
	}
}

// conferenceEvent fires conference::maintenance like mod_conference: the conference's
// data, then for a member (conference_member_add_event_data) Floor, the channel's data —
// with its variables only when the profile has verbose-events, else the basic data —
// and the member's flags; Action last.
func (s *Server) conferenceEvent(r *room, c *Channel, memberID int, action string, extra ...Header) {
	hs := []Header{
		{"Conference-Name", r.name},
		{"Conference-Domain", "127.0.0.1"},
		{"Conference-Size", strconv.Itoa(len(r.members))},
		{"Conference-Ghosts", "0"},
		{"Conference-Profile-Name", r.profile},
		{"Conference-Unique-ID", r.uuid},
	}
	if c != nil {
		talking := "false"
		if action == "start-talking" {
			talking = "true"
		}
		hs = append(hs, Header{"Floor", "false"})
		if s.verboseEvents(r.profile) {
			hs = append(hs, channelData(c)...)
		} else {
			hs = append(hs, basicData(c)...)
		}
		hs = append(hs, Header{"Video", "false"}, Header{"Hear", "true"}, Header{"See", "true"},
			Header{"Speak", "true"}, Header{"Talking", talking}, Header{"Mute-Detect", "false"}, Header{"Hold", "false"},
			Header{"Member-ID", strconv.Itoa(memberID)}, Header{"Member-Type", "member"},
			Header{"Member-Ghost", "false"}, Header{"Energy-Level", "100"}, Header{"Current-Energy", "0"})
	}
	hs = append(hs, Header{"Action", action})
	hs = append(hs, extra...)
	ev := &Event{Name: "CUSTOM", Subclass: "conference::maintenance"}
	ev.Headers = append(s.baseHeaders("CUSTOM", "conference::maintenance", "mod_conference.c", "conference_member_add_event_data", 1), hs...)
	s.deliver(ev)
}

// verboseEvents reports whether a conference profile has verbose-events: the shipped
// conference.conf.xml sets it on ConferenceProfile, unless Options.NoVerboseEvents.
func (s *Server) verboseEvents(profile string) bool {
	return profile == ConferenceProfile && !s.opts.NoVerboseEvents
}

func (s *Server) joinConference(id, data string) {
	name, profile, _ := strings.Cut(data, "@")
	if profile == "" {
		profile = "default"
	}
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	r := s.chans.rooms[name]
	created := r == nil
	if created {
		r = &room{name: name, profile: profile, uuid: uuid.NewString(), layout: "1x1"}
		s.chans.rooms[name] = r
	}
	r.nextID++
	r.members = append(r.members, id)
	c.Conference, c.ConferenceProfile, c.MemberID = name, profile, r.nextID
	snap := c.clone()
	rs := *r
	s.mu.Unlock()
	if created {
		s.conferenceEvent(&rs, nil, 0, "conference-create")
	}
	s.conferenceEvent(&rs, &snap, snap.MemberID, "add-member")
}

func (s *Server) leaveConference(id string) {
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok || c.Conference == "" {
		s.mu.Unlock()
		return
	}
	r := s.chans.rooms[c.Conference]
	for i, m := range r.members {
		if m == id {
			r.members = append(r.members[:i], r.members[i+1:]...)
			break
		}
	}
	memberID := c.MemberID
	c.Conference, c.ConferenceProfile, c.MemberID = "", "", 0
	snap := c.clone()
	empty := len(r.members) == 0
	if empty {
		delete(s.chans.rooms, r.name)
	}
	rs := *r
	s.mu.Unlock()
	s.conferenceEvent(&rs, &snap, memberID, "del-member")
	if empty {
		s.conferenceEvent(&rs, nil, 0, "conference-destroy")
	}
}

// Talk fires conference::maintenance start-talking or stop-talking for a member.
func (s *Server) Talk(id string, talking bool) error {
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok || c.Conference == "" {
		s.mu.Unlock()
		return fmt.Errorf("fakefs: channel %s is not in a conference", id)
	}
	rs := *s.chans.rooms[c.Conference]
	snap := c.clone()
	s.mu.Unlock()
	action := "stop-talking"
	if talking {
		action = "start-talking"
	}
	s.conferenceEvent(&rs, &snap, snap.MemberID, action)
	return nil
}

// Hangup hangs a channel up: it leaves its application (del-member…), then CHANNEL_HANGUP
// and CHANNEL_HANGUP_COMPLETE are fired and the channel disappears.
func (s *Server) Hangup(id, cause string) error {
	if cause == "" {
		cause = "NORMAL_CLEARING"
	}
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("fakefs: no channel %s", id)
	}
	bridged := c.BridgedTo
	s.mu.Unlock()
	s.leaveApp(id)
	s.mu.Lock()
	c.State, c.CallState = "CS_HANGUP", "HANGUP"
	c.setVar("hangup_cause", cause)
	s.syncRow(c)
	snap := c.clone()
	s.mu.Unlock()
	cause1 := Header{"Hangup-Cause", cause}
	s.fireChannel("CHANNEL_HANGUP", &snap, nil, cause1)
	s.mu.Lock()
	c.State = "CS_REPORTING"
	snap = c.clone()
	s.chans.remove(id)
	s.dropRow(id)
	s.mu.Unlock()
	s.fireChannel("CHANNEL_HANGUP_COMPLETE", &snap, nil, cause1)
	s.mu.Lock()
	hooks := append([]func(Channel, string){}, s.hangupHooks...)
	s.mu.Unlock()
	for _, h := range hooks {
		h(snap, cause)
	}
	if bridged != "" {
		s.Hangup(bridged, cause)
	}
	return nil
}

// OnHangup registers f to be called (synchronously, after CHANNEL_HANGUP_COMPLETE) for
// every channel that hangs up, whatever the reason (uuid_kill, sendmsg hangup, conference
// kick, Hangup). A SIP user agent standing in for FreeSWITCH's SIP side uses it to send
// BYE on the channel's dialog.
func (s *Server) OnHangup(f func(ch Channel, cause string)) {
	s.mu.Lock()
	s.hangupHooks = append(s.hangupHooks, f)
	s.mu.Unlock()
}

// ErrForbidden is returned by Route for a call the shipped dialplan refuses (403).
var ErrForbidden = errors.New("fakefs: 403 Forbidden (no valid " + SessionHeader + ")")

// sessionIDPattern is the condition of testdata/freeswitch/dialplan/nkbridge.xml.
var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// INVITE is what a SIP user agent learned from an INVITE to the nkbridge SIP profile.
type INVITE struct {
	CallID      string            // Call-ID
	RequestUser string            // user part of the Request-URI (destination number)
	FromUser    string            // user part of From
	FromDisplay string            // display name of From
	RemoteAddr  string            // source IP of the INVITE
	Headers     map[string]string // X- headers (X-NKB-Session…), names as sent
}

// Route runs an incoming INVITE through the shipped dialplan: without a well-formed
// X-NKB-Session header it returns ErrForbidden (answer 403, no channel is created);
// otherwise it creates the channel (with the variables sofia would set), answers and parks
// it, firing CHANNEL_CREATE, CHANNEL_ANSWER, CHANNEL_EXECUTE and CHANNEL_PARK.
func (s *Server) Route(inv INVITE) (Channel, error) {
	var session string
	for k, v := range inv.Headers {
		if strings.EqualFold(k, SessionHeader) {
			session = v
		}
	}
	if !sessionIDPattern.MatchString(session) {
		return Channel{}, ErrForbidden
	}
	hdrs := map[string]string{}
	for k, v := range inv.Headers {
		if strings.EqualFold(k, SessionHeader) {
			k = SessionHeader
		}
		hdrs[k] = v
	}
	vars := map[string]string{
		"sip_call_id":          inv.CallID,
		"sip_from_user":        inv.FromUser,
		"sip_req_user":         inv.RequestUser,
		"sip_to_user":          inv.RequestUser,
		"sip_network_ip":       inv.RemoteAddr,
		"nkb_session":          session,
		"endpoint_disposition": "ANSWER",
	}
	maps.Copy(vars, s.dialplanVars())
	return s.InboundCall(ChannelSpec{
		Dest:           inv.RequestUser,
		CallerIDName:   inv.FromDisplay,
		CallerIDNumber: inv.FromUser,
		NetworkAddr:    inv.RemoteAddr,
		Name:           "sofia/" + SIPProfile + "/" + inv.FromUser + "@" + inv.RemoteAddr,
		SIPHeaders:     hdrs,
		Vars:           vars,
	})
}

// DialplanVars are the variables the shipped dialplan's "set" actions give a call before
// answering it (config_test.go keeps them in step with testdata/freeswitch).
func DialplanVars() map[string]string {
	return map[string]string{
		"hangup_after_bridge": "false",
		"park_timeout":        "3600",
		// FreeSWITCH 1.10's replacements for the profile's deprecated rtp-timeout-sec and
		// rtp-hold-timeout-sec, in milliseconds, read when the call's RTP starts.
		"media_timeout":      "300000",
		"media_hold_timeout": "1800000",
		// Marked audio packets make FreeSWITCH flush what it has read; nkbridge marks
		// only talk-spurt starts, and this makes FreeSWITCH ignore the bit anyway.
		"rtp_manual_rtp_bugs": "IGNORE_MARK_BIT",
	}
}

// dialplanVars is DialplanVars with Options.DialplanOverride applied.
func (s *Server) dialplanVars() map[string]string {
	m := DialplanVars()
	maps.Copy(m, s.opts.DialplanOverride)
	maps.DeleteFunc(m, func(_, v string) bool { return v == "" })
	return m
}

// --- built-in api commands -----------------------------------------------------------

func (s *Server) registerBuiltins() {
	s.apis["status"] = func(string) string {
		return "UP 0 years, 0 days, 0 hours, 1 minute, 2 seconds, 3 milliseconds, 4 microseconds\nFreeSWITCH (Version 1.10.12 -release 64bit) is ready\n"
	}
	s.apis["show"] = s.apiShow
	s.apis["uuid_transfer"] = s.apiTransfer
	s.apis["uuid_kill"] = s.apiKill
	s.apis["uuid_bridge"] = s.apiBridge
	s.apis["uuid_getvar"] = s.apiGetVar
	s.apis["uuid_exists"] = func(args string) string {
		_, ok := s.Channel(strings.TrimSpace(args))
		return strconv.FormatBool(ok)
	}
	s.apis["conference"] = s.apiConference
}

const noSuchChannel = "-ERR No such channel!\n"

// apiShow implements "show channels as json" ({"row_count":N,"rows":[…]} with the columns
// of the channels table, all strings; {"row_count":0} when empty). Like FreeSWITCH's, the
// table lags the channels (Options.ShowChannelsLag): a channel created a moment ago is
// not in it yet, one just moved still shows its old application, one just hung up is
// still listed.
func (s *Server) apiShow(args string) string {
	f := strings.Fields(args)
	if len(f) == 0 || f[0] != "channels" {
		return "-USAGE: show channels\n"
	}
	chans := s.tableRows() // the channels table, behind the channels by ShowChannelsLag
	if len(f) < 3 || f[1] != "as" || f[2] != "json" {
		var b strings.Builder
		b.WriteString("uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,application_data\n")
		for _, c := range chans {
			fmt.Fprintf(&b, "%s,%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s\n", c.UUID, c.Direction, c.Created.Format("2006-01-02 15:04:05"),
				c.Created.Unix(), c.Name, c.State, c.CallerIDName, c.CallerIDNumber, c.NetworkAddr, c.Dest, c.Application, c.ApplicationData)
		}
		fmt.Fprintf(&b, "\n%d total.\n", len(chans))
		return b.String()
	}
	type kv struct{ k, v string }
	rows := make([][]kv, 0, len(chans))
	for _, c := range chans {
		rows = append(rows, []kv{
			{"uuid", c.UUID}, {"direction", c.Direction},
			{"created", c.Created.Format("2006-01-02 15:04:05")}, {"created_epoch", strconv.FormatInt(c.Created.Unix(), 10)},
			{"name", c.Name}, {"state", c.State}, {"cid_name", c.CallerIDName}, {"cid_num", c.CallerIDNumber},
			{"ip_addr", c.NetworkAddr}, {"dest", c.Dest}, {"application", c.Application},
			{"application_data", c.ApplicationData}, {"dialplan", "XML"}, {"context", c.Context},
			{"read_codec", "PCMU"}, {"read_rate", "8000"}, {"read_bit_rate", "64000"},
			{"write_codec", "PCMU"}, {"write_rate", "8000"}, {"write_bit_rate", "64000"},
			{"secure", ""}, {"hostname", s.opts.Hostname}, {"presence_id", ""}, {"presence_data", ""},
			{"accountcode", ""}, {"callstate", c.CallState}, {"callee_name", ""}, {"callee_num", ""},
			{"callee_direction", ""}, {"call_uuid", ""}, {"sent_callee_name", ""}, {"sent_callee_num", ""},
			{"initial_cid_name", c.CallerIDName}, {"initial_cid_num", c.CallerIDNumber},
			{"initial_ip_addr", c.NetworkAddr}, {"initial_dest", c.Dest}, {"initial_dialplan", "XML"},
			{"initial_context", c.Context},
		})
	}
	b := []byte(`{"row_count":` + strconv.Itoa(len(rows)))
	if len(rows) > 0 {
		b = append(b, `,"rows":[`...)
		for i, r := range rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			for j, f := range r {
				if j > 0 {
					b = append(b, ',')
				}
				b = cjsonString(b, f.k)
				b = append(b, ':')
				b = cjsonString(b, f.v)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, "}\n"...)
	if !json.Valid(b[:len(b)-1]) {
		return "-ERR internal\n"
	}
	return string(b)
}

// apiTransfer: uuid_transfer <uuid> [-bleg|-both] <dest> [<dialplan>] [<context>]. With the
// "inline" dialplan, dest is "app[:arg][,app[:arg]]…" and is executed on the channel.
func (s *Server) apiTransfer(args string) string {
	f := strings.Fields(args)
	if len(f) < 2 {
		return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
	}
	id := f[0]
	f = f[1:]
	both := false
	if f[0] == "-both" || f[0] == "-bleg" {
		both = f[0] == "-both"
		f = f[1:]
	}
	if len(f) == 0 {
		return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
	}
	c, ok := s.Channel(id)
	if !ok {
		return noSuchChannel
	}
	dest, dialplan := f[0], ""
	if len(f) > 1 {
		dialplan = f[1]
	}
	targets := []string{id}
	if both && c.BridgedTo != "" {
		targets = append(targets, c.BridgedTo)
	}
	for _, t := range targets {
		s.unbridge(t)
		if dialplan != "inline" {
			// XML dialplan: the fake parks the channel, as the shipped dialplan would.
			s.Execute(t, "park", "")
			continue
		}
		for _, step := range strings.Split(dest, ",") {
			app, arg, _ := strings.Cut(step, ":")
			s.Execute(t, app, arg)
		}
	}
	return "+OK\n"
}

func (s *Server) unbridge(id string) {
	s.mu.Lock()
	c, ok := s.chans.byUUID[id]
	if !ok || c.BridgedTo == "" {
		s.mu.Unlock()
		return
	}
	other := s.chans.byUUID[c.BridgedTo]
	c.BridgedTo = ""
	if other != nil {
		other.BridgedTo = ""
	}
	snap := c.clone()
	s.mu.Unlock()
	s.fireChannel("CHANNEL_UNBRIDGE", &snap, nil)
}

func (s *Server) apiKill(args string) string {
	f := strings.Fields(args)
	if len(f) == 0 {
		return "-USAGE: <uuid> [cause]\n"
	}
	cause := "NORMAL_CLEARING"
	if len(f) > 1 {
		cause = f[1]
	}
	if err := s.Hangup(f[0], cause); err != nil {
		return noSuchChannel
	}
	return "+OK\n"
}

func (s *Server) apiBridge(args string) string {
	f := strings.Fields(args)
	if len(f) != 2 {
		return "-USAGE: <uuid> <other_uuid>\n"
	}
	for _, id := range f {
		if _, ok := s.Channel(id); !ok {
			return "-ERR Invalid uuid " + id + "\n"
		}
	}
	for _, id := range f {
		s.leaveApp(id)
	}
	s.mu.Lock()
	a, b := s.chans.byUUID[f[0]], s.chans.byUUID[f[1]]
	if a == nil || b == nil {
		s.mu.Unlock()
		return "-ERR Invalid uuid\n"
	}
	a.BridgedTo, b.BridgedTo = b.UUID, a.UUID
	a.Application, a.ApplicationData = "", ""
	b.Application, b.ApplicationData = "", ""
	s.syncRow(a)
	s.syncRow(b)
	sa := a.clone()
	s.mu.Unlock()
	s.fireChannel("CHANNEL_BRIDGE", &sa, []Header{{"Bridge-A-Unique-ID", f[0]}, {"Bridge-B-Unique-ID", f[1]}, {"Other-Leg-Unique-ID", f[1]}})
	return "+OK " + f[1] + "\n"
}

func (s *Server) apiGetVar(args string) string {
	f := strings.Fields(args)
	if len(f) != 2 {
		return "-USAGE: <uuid> <var>\n"
	}
	c, ok := s.Channel(f[0])
	if !ok {
		return noSuchChannel
	}
	v, ok := c.Vars[f[1]]
	if !ok || v == "" {
		return "_undef_"
	}
	return v
}

// apiConference implements the subset nkbridge uses: list, vid-layout, kick, hup.
func (s *Server) apiConference(args string) string {
	f := strings.Fields(args)
	if len(f) < 2 {
		return "-ERR Conference name and command required\n" // close to FS's usage text
	}
	name, cmd := f[0], f[1]
	s.mu.Lock()
	r := s.chans.rooms[name]
	s.mu.Unlock()
	if r == nil {
		return "-ERR Conference " + name + " not found\n"
	}
	switch cmd {
	case "list":
		var b strings.Builder
		s.mu.Lock()
		for _, id := range r.members {
			c := s.chans.byUUID[id]
			fmt.Fprintf(&b, "%d;%s;%s;%s;%s;hear|speak;0;0;100\n", c.MemberID, c.Name, c.UUID, c.CallerIDName, c.CallerIDNumber)
		}
		s.mu.Unlock()
		return b.String()
	case "vid-layout":
		if len(f) < 3 {
			return "-ERR no layout specified\n"
		}
		s.mu.Lock()
		r.layout = f[2]
		s.mu.Unlock()
		return "+OK Change to layout " + f[2] + "\n"
	case "kick", "hup":
		if len(f) < 3 {
			return "-ERR member id required\n"
		}
		s.mu.Lock()
		var target string
		for _, id := range r.members {
			if strconv.Itoa(s.chans.byUUID[id].MemberID) == f[2] {
				target = id
			}
		}
		s.mu.Unlock()
		if target == "" {
			return "-ERR Non-Existant ID " + f[2] + "\n"
		}
		s.Hangup(target, "NORMAL_CLEARING")
		return "+OK " + cmd + " " + f[2] + "\n"
	}
	return "-ERR Unknown Command [" + cmd + "]\n"
}

// Layout returns a conference's current video layout ("" if the room does not exist).
func (s *Server) Layout(room string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.chans.rooms[room]; r != nil {
		return r.layout
	}
	return ""
}

func (s *Server) async(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// sendmsg implements "sendmsg <uuid>" with call-command execute or hangup.
func (s *Server) sendmsg(args string, cmd Command) string {
	id := strings.TrimSpace(args)
	if id == "" {
		id = cmd.Header("session-id")
	}
	if _, ok := s.Channel(id); !ok {
		return "-ERR invalid session id [" + id + "]"
	}
	switch strings.ToLower(cmd.Header("call-command")) {
	case "execute":
		app := cmd.Header("execute-app-name")
		arg := cmd.Header("execute-app-arg")
		if arg == "" && strings.EqualFold(cmd.Header("content-type"), "text/plain") {
			arg = cmd.Body
		}
		s.async(func() { s.execute(id, app, arg, cmd.Header("Event-UUID")) }) // +OK means "queued"
	case "hangup":
		cause := cmd.Header("hangup-cause")
		s.async(func() { s.Hangup(id, cause) })
	}
	return "+OK"
}
