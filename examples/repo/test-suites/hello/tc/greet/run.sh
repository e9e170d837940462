#!/bin/bash
# Every host runs this script; each takes its own branch.
source "$PHALANX_FUNCTIONS"
case "@slavename@" in
  srv1.*) log "@greeting@ from the server" ;;
  *)      log "@greeting@ from client @shortname@" ;;
esac
echo "@greeting@ from @slavename@" >> hello.log
stamp uname -s
