package httpserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/zonetoll/zonetoll/shared/fileversion"
)

// keyPair serves a certificate from files and reloads it when either file changes, checked at most
// every few seconds, so certificates rotated by cert-manager or a mounted Secret need no restart.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certFile0 os.FileInfo // the files as they were when cert was loaded
	keyFile0  os.FileInfo
	nextCheck time.Time
}

const tlsRecheck = 10 * time.Second

func newKeyPair(certFile, keyFile string, log *slog.Logger) (*keyPair, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile, log: log}
	if err := kp.load(); err != nil {
		return nil, err
	}
	return kp, nil
}

func (kp *keyPair) load() error {
	cst, err := os.Stat(kp.certFile)
	if err != nil {
		return fmt.Errorf("reading TLS certificate (ZONETOLL_HTTP_TLS_CERT_FILE): %w", err)
	}
	kst, err := os.Stat(kp.keyFile)
	if err != nil {
		return fmt.Errorf("reading TLS key (ZONETOLL_HTTP_TLS_KEY_FILE): %w", err)
	}
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS key pair %s, %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.certFile0, kp.keyFile0 = &cert, cst, kst
	return nil
}

func (kp *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	now := time.Now()
	if now.Before(kp.nextCheck) {
		return kp.cert, nil
	}
	kp.nextCheck = now.Add(tlsRecheck)
	cst, err1 := os.Stat(kp.certFile)
	kst, err2 := os.Stat(kp.keyFile)
	if err1 != nil || err2 != nil || (!fileversion.Changed(kp.certFile0, cst) && !fileversion.Changed(kp.keyFile0, kst)) {
		return kp.cert, nil // keep serving the last good pair
	}
	if err := kp.load(); err != nil {
		kp.log.Error("reloading TLS certificate; still serving the previous one", "error", err)
		return kp.cert, nil
	}
	kp.log.Info("reloaded TLS certificate", "cert_file", kp.certFile)
	return kp.cert, nil
}
