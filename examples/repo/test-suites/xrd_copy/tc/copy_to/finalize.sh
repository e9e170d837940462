#!/bin/bash
source "$PHALANX_FUNCTIONS"
rm -f data/*.bin
