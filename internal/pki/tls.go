package pki

import "crypto/tls"

// ServerTLSConfig serves cert with TLS 1.2 or 1.3. TLS 1.2 is limited to
// ECDHE key exchange with AEAD ciphers (forward secrecy, no CBC); TLS 1.3
// suites are not configurable and all qualify. Both ECDSA and RSA suites are
// listed because an administrator may supply an RSA certificate for the API.
// It asks for no client certificate: the API (:8083) never takes a Defender
// certificate as a credential.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		ClientAuth: tls.NoClientCert,
	}
}
