#!/bin/bash
source "$PHALANX_FUNCTIONS"
log "@slavename@ is ready to greet"
