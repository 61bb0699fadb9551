"""Tests run under the verification's numerics: x64 on, strict dtype promotion, rank promotion raises."""
import verification

verification.configure()
