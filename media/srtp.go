package media

import "github.com/nkbridge/nkbridge/media/plainrtp"

// SRTP on plain-RTP legs (SDES, RFC 4568): an offer or answer with a=crypto keys makes the
// leg's endpoint protect and check its media with them (plainrtp.Endpoint.SetSRTP). Answers
// to SDES offers always use SRTP; our own offers carry keys when Config.SDESOffers is set.

// setSRTP applies the SDES keys of an offer/answer exchange to the leg's endpoint; localIsOffer
// says which of the two is ours.
func (l *rtpLeg) setSRTP(offer, answer *plainrtp.Description, localIsOffer bool) error {
	tx, rx, err := plainrtp.SRTPKeys(offer, answer, localIsOffer)
	if err != nil {
		return err
	}
	if err := l.ep.SetSRTP(tx, rx); err != nil {
		return err
	}
	if tx != nil {
		l.s.log.Debug("media: SRTP on plain RTP leg", "side", l.side, "suite", tx.Suite)
	}
	return nil
}

// keepLocalKey makes an answer to a re-offer reuse the key we send with, when the suite
// chosen is the one in use: the peer's context for our stream carries on (no rekey unless the
// suite changes or the peer changes its own key, which only affects its direction).
func (l *rtpLeg) keepLocalKey(ans *plainrtp.Description) {
	tx, _ := l.ep.Keys()
	if tx == nil || len(ans.Crypto) != 1 || ans.Crypto[0].Suite != tx.Suite {
		return
	}
	ans.Crypto[0].Key = tx.Key
	ans.Crypto[0].MKI = tx.MKI
}
