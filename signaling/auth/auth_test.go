package auth

import "testing"

func TestHashAndCheck(t *testing.T) {
	h, err := HashPassword("s3cret", 1000)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("s3cret", 1000)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
	u, err := NewUsers(map[string]string{"alice": h})
	if err != nil {
		t.Fatal(err)
	}
	if !u.Check("alice", "s3cret") {
		t.Error("right password refused")
	}
	if u.Check("alice", "S3cret") || u.Check("alice", "") {
		t.Error("wrong password accepted")
	}
	if u.Check("bob", "s3cret") {
		t.Error("unknown user accepted")
	}
	if u.Empty() || u.Len() != 1 {
		t.Error("Empty/Len wrong")
	}
}

func TestBadHashes(t *testing.T) {
	for _, h := range []string{"", "plain", "pbkdf2-sha256$x$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"pbkdf2-sha256$1000$!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "md5$1$a$b"} {
		if _, err := NewUsers(map[string]string{"u": h}); err == nil {
			t.Errorf("hash %q accepted", h)
		}
	}
	if _, err := NewUsers(map[string]string{"": "x"}); err == nil {
		t.Error("empty user name accepted")
	}
	var nilUsers *Users
	if !nilUsers.Empty() || nilUsers.Check("a", "b") {
		t.Error("nil Users misbehaves")
	}
}
