// Package securitytest holds the security tests of nkbridge: each reproduces
// an attack by a hostile client (a second ordinary user, a flood of
// connections, a web page, a panicking component) against the real server
// (the control API with the embedded media backend, the Verto server, SIP
// and the media engine) and checks that it fails, leaving every other
// client's sessions and calls alone. docs/SECURITY.md describes the threat
// model these tests exercise. The package has no non-test code.
package securitytest
