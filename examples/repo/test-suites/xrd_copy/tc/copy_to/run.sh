#!/bin/bash
# The client "copies" its file to the data server through the coordinator's
# key-value board; the data server checks the checksum it was promised.
source "$PHALANX_FUNCTIONS"
case "@slavename@" in
  client1.xrd.test)
    phalanx-send payload "$(base64 -w0 data/source.bin)"
    phalanx-send checksum "$(sha256sum data/source.bin | cut -d' ' -f1)"
    log "sent 4096 bytes" | tee -a xrd-@slavename@.log
    ;;
  ds1.xrd.test)
    phalanx-wait payload --timeout 30 | base64 -d > data/copy.bin
    expected=$(phalanx-wait checksum --timeout 30)
    [ "$(sha256sum data/copy.bin | cut -d' ' -f1)" = "$expected" ]
    log "stored a verified copy" | tee -a xrd-@slavename@.log
    assert_fail cmp -s data/copy.bin /dev/null
    ;;
  *)
    log "@slavename@ watches"
    ;;
esac
