#!/bin/sh
# never run by the configuration loader
exit 0
