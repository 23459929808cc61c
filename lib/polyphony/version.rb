# frozen_string_literal: true

module Polyphony
  VERSION = '0.1.0'
end
