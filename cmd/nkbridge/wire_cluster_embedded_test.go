package main

import (
	"strings"
	"testing"
	"time"
)

// cluster.embedded_nats: defaults from defaults.yaml (off, 127.0.0.1:4222), NKB_* variables
// reach every key (routes comma-separated), and a bad value stops the configuration with an
// error naming its key.
func TestEmbeddedNATSConfig(t *testing.T) {
	cfg, err := loadConfig("", testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Cluster.EmbeddedNATS
	if e.Enabled || e.Listen != "127.0.0.1:4222" || e.ClusterName != "nkbridge" || e.StartTimeout != 30*time.Second || e.MaxStore != 1<<30 {
		t.Fatalf("defaults: %+v", e)
	}
	if cfg.Cluster.enabled() {
		t.Fatal("cluster enabled by default")
	}
	cfg, err = loadConfig("", testEnv(map[string]string{
		"NKB_CLUSTER_EMBEDDED_NATS_ENABLED":        "true",
		"NKB_CLUSTER_EMBEDDED_NATS_LISTEN":         "127.0.0.1:14222",
		"NKB_CLUSTER_EMBEDDED_NATS_CLUSTER_LISTEN": "127.0.0.1:16222",
		"NKB_CLUSTER_EMBEDDED_NATS_ROUTES":         "nats://127.0.0.1:16222, nats://127.0.0.1:16223",
		"NKB_CLUSTER_EMBEDDED_NATS_STORE_DIR":      "/var/lib/nkbridge/nats",
		"NKB_CLUSTER_EMBEDDED_NATS_MAX_MEMORY":     "1000000",
	}))
	if err != nil {
		t.Fatal(err)
	}
	e = cfg.Cluster.EmbeddedNATS
	if !e.Enabled || e.Listen != "127.0.0.1:14222" || len(e.Routes) != 2 || e.Routes[1] != "nats://127.0.0.1:16223" || e.StoreDir != "/var/lib/nkbridge/nats" || e.MaxMemory != 1000000 {
		t.Fatalf("from the environment: %+v", e)
	}
	if !cfg.Cluster.enabled() {
		t.Fatal("embedded_nats on does not enable the cluster")
	}
	for _, tc := range []struct {
		env map[string]string
		key string
	}{
		{map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_LISTEN": "0.0.0.0:4222"}, "cluster.embedded_nats.listen"},
		{map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_CLUSTER_LISTEN": "0.0.0.0:6222", "NKB_CLUSTER_EMBEDDED_NATS_ROUTES": "nats://127.0.0.1:6222"}, "cluster.embedded_nats.cluster_user"},
		{map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_CLUSTER_LISTEN": "127.0.0.1:6222"}, "cluster.embedded_nats.routes"},
		{map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_CLUSTER_LISTEN": "127.0.0.1:6222", "NKB_CLUSTER_EMBEDDED_NATS_ROUTES": "nats://nats.example:6222"}, "cluster.embedded_nats.routes"},
		{map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_CLUSTER_NAME": ""}, "cluster.embedded_nats.cluster_name"},
		{map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_START_TIMEOUT": "0s"}, "cluster.embedded_nats.start_timeout"},
	} {
		env := map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_ENABLED": "true"}
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := loadConfig("", testEnv(env))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: %v, want an error naming %s", tc.env, err, tc.key)
		}
	}
	// Off, nothing is checked (a disabled section may hold anything).
	if _, err := loadConfig("", testEnv(map[string]string{"NKB_CLUSTER_EMBEDDED_NATS_LISTEN": "0.0.0.0:4222"})); err != nil {
		t.Fatalf("disabled section checked: %v", err)
	}
}
