#!/bin/bash
source "$PHALANX_FUNCTIONS"
rm -rf www payload.bin server.port server.pid server.log
log "@slavename@ ready as @role@"
