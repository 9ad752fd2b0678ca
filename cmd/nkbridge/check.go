package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/internal/wsutil"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// checkSections builds the configuration of every section the way serve does, binding no port
// and dialing nothing, so that -check-config refuses every value start-up would refuse. Each
// error names the key.
func (c *Config) checkSections() error {
	if err := checkLeaves(reflect.ValueOf(c).Elem(), ""); err != nil {
		return err
	}
	if c.API.Listen == "" {
		return fmt.Errorf("api.listen is required")
	}
	users, err := c.apiUsers()
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if err := checkWebSocket("api", c.API.Listen, c.API.TLSCert, c.API.TLSKey, c.API.AllowedOrigins, users.Empty()); err != nil {
		return err
	}
	if err := c.checkBackends(); err != nil {
		return err
	}
	if c.Media.Enabled {
		if _, err := c.Media.engineConfig(slog.New(slog.DiscardHandler)); err != nil {
			return err
		}
		if err := checkFile("media.park_file", c.Media.ParkFile); err != nil {
			return err
		}
	}
	if c.SIP.Enabled {
		if err := c.checkSIP(); err != nil {
			return err
		}
	}
	if c.Verto.Listen != "" {
		if err := c.Verto.validate(); err != nil {
			return err
		}
		if err := checkWebSocket("verto", c.Verto.Listen, c.Verto.TLSCert, c.Verto.TLSKey, c.Verto.AllowedOrigins, users.Empty()); err != nil {
			return err
		}
	}
	if c.FreeSWITCH.ESLAddr != "" {
		if err := c.FreeSWITCH.validate(); err != nil {
			return err
		}
		if err := esl.ValidatePassword(c.FreeSWITCH.ESLPassword); err != nil {
			return fmt.Errorf("freeswitch.esl_password: %w", err)
		}
		if !c.Media.Enabled {
			return fmt.Errorf("freeswitch.esl_addr: the FreeSWITCH backend needs the embedded media engine (media.enabled: true)")
		}
	}
	if _, err := c.CDR.options(); err != nil {
		return err
	}
	if _, err := c.Streams.config(nil); err != nil {
		return err
	}
	return c.Cluster.check()
}

// apiUsers is the API's user store.
func (c *Config) apiUsers() (*auth.Users, error) {
	hashes := make(map[string]string, len(c.Users))
	var admins []string
	for _, u := range c.Users {
		hashes[u.User] = u.PasswordHash
		if u.Admin {
			admins = append(admins, u.User)
		}
	}
	return auth.NewUsers(hashes, admins...)
}

// checkSIP builds the SIP server's and the SIP gateway's configurations.
func (c *Config) checkSIP() error {
	api := map[string]bool{}
	for _, u := range c.Users {
		api[u.User] = true
	}
	if err := c.SIP.check(api); err != nil {
		return err
	}
	sc, _, err := c.SIP.sipServerConfig()
	if err != nil {
		return err
	}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	gc := sipgw.Config{Route: sipgw.RouteConfig{Extensions: c.SIP.Extensions, RoomPrefixes: c.SIP.RoomPrefixes,
		SIPPrefixes: c.SIP.SIPPrefixes, VertoPrefixes: c.SIP.VertoPrefixes}, UserFarSide: c.SIP.UserFarSide}
	if err := gc.Validate(); err != nil {
		return fmt.Errorf("sip (extensions, room_prefixes, sip_prefixes, verto_prefixes, user_far_side): %w", err)
	}
	return nil
}

// checkBackends: sessions.backends names backends this configuration registers.
func (c *Config) checkBackends() error {
	known := map[string]bool{}
	if c.Media.Enabled {
		known["media"] = true
	}
	if c.FreeSWITCH.ESLAddr != "" {
		known["freeswitch"] = true
	}
	for typ, name := range c.Sessions.Backends {
		if !known[name] {
			return fmt.Errorf("sessions.backends: %s: %q is not a configured backend (media with media.enabled, freeswitch with freeswitch.esl_addr)", typ, name)
		}
	}
	return nil
}

// negativeAllowed are the numeric keys where a negative value means something.
var negativeAllowed = map[string]bool{
	"media.tcp_port":           true, // -1: any free port
	"media.media_timeout":      true, // negative: off
	"media.quarantine":         true, // negative: off
	"media.rtp_ports_per_user": true, // -1: no cap
	"media.rtp_ports_reserve":  true, // -1: no reserve
}

// checkLeaves walks the configuration: numbers and durations must not be negative (but for
// negativeAllowed), and addresses (keys listen, *_listen, *_addr) must be host:port with a
// port within 0..65535.
func checkLeaves(v reflect.Value, prefix string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		name, fv := prefix+key, v.Field(i)
		switch fv.Kind() {
		case reflect.Struct:
			if err := checkLeaves(fv, name+"."); err != nil {
				return err
			}
		case reflect.Int, reflect.Int64:
			if fv.Int() < 0 && !negativeAllowed[name] {
				if fv.Type() == reflect.TypeOf(time.Duration(0)) {
					return fmt.Errorf("%s %s: must not be negative", name, time.Duration(fv.Int()))
				}
				return fmt.Errorf("%s %d: must not be negative", name, fv.Int())
			}
		case reflect.Float64:
			if fv.Float() < 0 && !negativeAllowed[name] {
				return fmt.Errorf("%s %v: must not be negative", name, fv.Float())
			}
		case reflect.String:
			if s := fv.String(); s != "" && (key == "listen" || strings.HasSuffix(key, "_listen") || strings.HasSuffix(key, "_addr")) {
				if err := checkAddr(s); err != nil {
					return fmt.Errorf("%s %q: %w", name, s, err)
				}
			}
		}
	}
	return nil
}

// checkAddr: addr is host:port with a numeric port within 0..65535.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number within 0..65535", port)
	}
	return nil
}

// checkWebSocket checks a WebSocket server's section (api, verto): no anonymous logins off
// loopback (open: no users), its TLS files, its allowed origins.
func checkWebSocket(section, listen, cert, key string, origins []string, open bool) error {
	if err := wsutil.CheckListen(section, listen, open); err != nil {
		return fmt.Errorf("%s.listen: %w", section, err)
	}
	if err := checkTLS(section, cert, key); err != nil {
		return err
	}
	if err := wsutil.CheckOrigins(section+".allowed_origins", origins, open); err != nil {
		return err
	}
	return checkOrigins(section+".allowed_origins", origins)
}

// checkTLS loads the certificate and key of a section (both or neither).
func checkTLS(section, cert, key string) error {
	if (cert == "") != (key == "") {
		return fmt.Errorf("%s.tls_cert and %s.tls_key go together", section, section)
	}
	if cert == "" {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		return fmt.Errorf("%s.tls_cert / %s.tls_key: %w", section, section, err)
	}
	return nil
}

// checkFile: a configured file (empty: none) is a readable regular file.
func checkFile(key, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s %q: not a regular file", key, path)
	}
	return nil
}

// checkOrigins: each allowed origin is "*" or scheme://host[:port], as browsers send it.
func checkOrigins(key string, origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%s: %q is not an origin (scheme://host[:port] or \"*\")", key, o)
		}
	}
	return nil
}
